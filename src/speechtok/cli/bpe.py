"""`speechtok bpe train | encode | decode`: byte-pair encoding of unit sequences."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import InputError
from .common import boundary, say

bpe_app = typer.Typer(help="Byte-pair encoding of unit sequences (SentencePiece).", no_args_is_help=True)


@bpe_app.command("train")
@boundary
def bpe_train(
    corpus: str = typer.Argument(..., metavar="CORPUS", help="A directory written by `speechtok tokenize` (BPE is learned on its stored units; deduplicated if it was run with --dedup)."),
    vocab_size: int = typer.Option(..., "--vocab-size", help="BPE pieces in all: every unit seen + 256 byte pieces + 3 specials + merges."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write: bpe.model (SentencePiece) + bpe.json."),
    stream: Optional[str] = typer.Option(None, help="Stream to learn on (default: the only one)."),
):
    """Train a BPE over the unit sequences of a tokenized corpus; use it with `speechtok tokenize --bpe`.

    Units become characters by a fixed, documented mapping (CJK ideographs, reversible for K up to 65,536); decoding gives the units back exactly."""
    from ..corpus.bpe_train import train_bpe

    bpe, summary = train_bpe(corpus, vocab_size, stream)
    bpe.save_pretrained(out)
    say(f"wrote {out}: {summary}")


def _apply(bpe_dir: Path, ids: Optional[List[int]], invert: bool) -> None:
    """Apply a unit BPE (or its inverse) to the ids given, or to each stdin line of ids."""
    from ..bpe import UnitBPE

    bpe = UnitBPE.from_pretrained(bpe_dir)
    lines = [" ".join(map(str, ids))] if ids else sys.stdin.read().splitlines()
    for line in lines:
        try:
            values = [int(v) for v in line.split()]
        except ValueError:
            raise InputError(f"expected space-separated integer ids, got {line!r}") from None
        out = bpe.decode(values) if invert else bpe.encode(values)
        typer.echo(" ".join(map(str, out.tolist())))


@bpe_app.command("encode")
@boundary
def bpe_encode(
    bpe_dir: Path = typer.Argument(..., metavar="BPE_DIR", help="A directory written by `speechtok bpe train`."),
    units: Optional[List[int]] = typer.Argument(None, metavar="UNITS", help="Unit ids; without them, each line of stdin is one sequence."),
):
    """Units -> BPE piece ids (space-separated, a line per sequence)."""
    _apply(bpe_dir, units, invert=False)


@bpe_app.command("decode")
@boundary
def bpe_decode(
    bpe_dir: Path = typer.Argument(..., metavar="BPE_DIR", help="A directory written by `speechtok bpe train`."),
    ids: Optional[List[int]] = typer.Argument(None, metavar="IDS", help="BPE piece ids; without them, each line of stdin is one sequence."),
):
    """BPE piece ids -> the units they stand for (exactly the units that were encoded)."""
    _apply(bpe_dir, ids, invert=True)


def register(app: typer.Typer) -> None:
    app.add_typer(bpe_app, name="bpe")

