"""The `speechtok` command: every command group registered on one typer app."""

from __future__ import annotations

import typer

from . import bpe, corpus, encode, imports, labels, quality, train

app = typer.Typer(
    help="speechtok: speech -> SSL features, semantic units and codec tokens, and back.\n\n"
         "Exit codes: 0 all good; 1 finished, some files failed; 2 bad arguments or refused input; "
         "3 the job could not finish (I/O, disk full); 4 a bug (traceback shown).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags without a type column, no boxes cut at 80 columns
    context_settings={"max_content_width": 120, "help_option_names": ["-h", "--help"]},
)
for group in (encode, corpus, labels, quality, bpe, imports, train):
    group.register(app)
