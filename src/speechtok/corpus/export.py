"""`speechtok export`: a tokenized corpus (Parquet) to the files other tools read.

- km:    fairseq/HuBERT labels, `{split}.km` (one line of space-separated ids per utterance, in
         input order, e.g. the .tsv's) and `dict.km.txt` (`<id> 1` per unit); with several streams,
         `{split}.{stream}.km` and `dict.{stream}.km.txt`.
- txt:   `{split}.txt`, `id<TAB>units` per utterance in a text style of `Units.to_text`, a column
         per stream.
- jsonl: `{split}.jsonl`, {"id", "path", <stream>: [ids], <stream>_durations?, <stream>_bpe?} per utterance.
- npy:   `<id>.npy` per utterance ([T] int64; `<id>.<stream>.npy` with several streams).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import InputError, UnknownNameError
from ..units import TEXT_STYLES, ids_to_text
from .inputs import file_for_id
from .manifest import TokenizedCorpus
from .sinks import atomic_write_text

FORMATS = ("km", "txt", "jsonl", "npy")


def export(out: str | os.PathLike, fmt: str, dest: str | os.PathLike, split: str | None = None,
           style: str = "fairseq", allow_missing: bool = False) -> list[Path]:
    """Write `fmt` files of the corpus tokenized into `out` under `dest`; returns what was written."""
    if fmt not in FORMATS:
        raise UnknownNameError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if style not in TEXT_STYLES:
        raise UnknownNameError(f"unknown text style {style!r}; choose from {', '.join(TEXT_STYLES)}")
    corpus = TokenizedCorpus.open(out)
    streams, vocab = corpus.streams, corpus.vocab_sizes
    split = split or corpus.split or "data"
    if fmt == "km" and corpus.errors and not allow_missing:
        raise InputError(f"{corpus.errors} utterances failed to tokenize (see {out}/errors*.jsonl), so a .km "
                         "file would not line up with the input manifest; fix or drop them from "
                         "the manifest, or pass --allow-missing")
    table = corpus.table()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    ids = table.column("id").to_pylist()
    codes = {s: table.column(s).to_pylist() for s in streams}
    written: list[Path] = []

    def write(path: Path, text: str) -> None:
        atomic_write_text(path, text)
        written.append(path)

    if fmt == "km":
        for s, k in zip(streams, vocab):
            label = "km" if len(streams) == 1 else f"{s}.km"
            write(dest / f"{split}.{label}", "".join(" ".join(map(str, c)) + "\n" for c in codes[s]))
            write(dest / f"dict.{label}.txt", "".join(f"{i} 1\n" for i in range(k)))
    elif fmt == "txt":
        lines = []
        for row, utterance in enumerate(ids):
            columns = [ids_to_text(codes[s][row], style) for s in streams]
            lines.append(utterance + "\t" + "\t".join(columns) + "\n")
        write(dest / f"{split}.txt", "".join(lines))
    elif fmt == "jsonl":
        extra = [n for n in table.column_names if n.endswith(("_durations", "_bpe"))]
        more = {n: table.column(n).to_pylist() for n in ["path", *extra]}
        lines = []
        for row, utterance in enumerate(ids):
            record = {"id": utterance, "path": more["path"][row], **{s: codes[s][row] for s in streams}}
            record.update({n: more[n][row] for n in extra})
            lines.append(json.dumps(record) + "\n")
        write(dest / f"{split}.jsonl", "".join(lines))
    else:
        for row, utterance in enumerate(ids):
            for s in streams:
                path = file_for_id(dest, utterance, ".npy" if len(streams) == 1 else f".{s}.npy")
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, np.asarray(codes[s][row], dtype=np.int64))
                written.append(path)
    return written
