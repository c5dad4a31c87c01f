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
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError, UnknownNameError
from ..units import TEXT_STYLES, ids_to_text
from .inputs import file_for_id
from .manifest import TokenizedCorpus
from .store import atomic_write_text, atomic_writer

FORMATS = ("km", "txt", "jsonl", "npy")


def export(out: str | os.PathLike, fmt: str, dest: str | os.PathLike, split: str | None = None,
           style: str = "fairseq", allow_missing: bool = False) -> list[Path]:
    """Write `fmt` files of the corpus tokenized into `out` under `dest`; returns what was written.
    Rows go out a shard at a time, in input order: memory holds one shard, whatever the corpus
    size, and every file is written under a temporary name and renamed once complete."""
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
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if fmt == "km":
        return _km(corpus, streams, vocab, dest, split)
    if fmt == "txt":
        return _lines(corpus, ["id", *streams], dest / f"{split}.txt", lambda row: _text_line(row, streams, style))
    if fmt == "jsonl":
        extra = [n for n in corpus.manifests[0].schema if n.endswith(("_durations", "_bpe"))]
        return _lines(corpus, ["id", "path", *streams, *extra], dest / f"{split}.jsonl",
                      lambda row: json.dumps({k: v for k, v in row.items() if k != "index"}) + "\n")
    written = []
    for table in corpus.tables(["id", *streams]):
        ids, codes = table.column("id").to_pylist(), {s: table.column(s).to_pylist() for s in streams}
        for row, utterance in enumerate(ids):
            for s in streams:
                path = file_for_id(dest, utterance, ".npy" if len(streams) == 1 else f".{s}.npy")
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, np.asarray(codes[s][row], dtype=np.int64))
                written.append(path)
    return written


def _km(corpus: TokenizedCorpus, streams: list[str], vocab: list[int], dest: Path, split: str) -> list[Path]:
    """fairseq's labels: `{split}.km` (a line of units per utterance) and `dict.km.txt` per stream."""
    labels = {s: "km" if len(streams) == 1 else f"{s}.km" for s in streams}
    written = []
    with ExitStack() as files:
        out = {s: files.enter_context(atomic_writer(dest / f"{split}.{labels[s]}")) for s in streams}
        for table in corpus.tables(streams):
            for s in streams:
                # ids joined by Arrow's string kernels: no Python int per unit (1M utterances: seconds, not minutes)
                lines = pc.binary_join(pc.cast(table.column(s), pa.list_(pa.string())), " ").to_pylist()
                out[s].write("".join(line + "\n" for line in lines))
    for s, k in zip(streams, vocab):
        atomic_write_text(dest / f"dict.{labels[s]}.txt", "".join(f"{i} 1\n" for i in range(k)))
        written += [dest / f"{split}.{labels[s]}", dest / f"dict.{labels[s]}.txt"]
    return written


def _lines(corpus: TokenizedCorpus, columns: list[str], path: Path, line) -> list[Path]:
    """One text line per row, `line(row)`, shard by shard."""
    with atomic_writer(path) as out:
        for table in corpus.tables(columns):
            out.write("".join(line(row) for row in table.to_pylist()))
    return [path]


def _text_line(row: dict, streams: list[str], style: str) -> str:
    """`id<TAB>units...`: an id holding a tab or a line break would break the line, so it is refused."""
    if any(c in row["id"] for c in "\t\n\r"):
        raise InputError(f"utterance id {row['id']!r} holds a tab or line break, which cannot be written in a "
                         "line of text; export --format jsonl instead (its ids are escaped)")
    return row["id"] + "\t" + "\t".join(ids_to_text(row[s], style) for s in streams) + "\n"
