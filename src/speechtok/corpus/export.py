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
import pyarrow as pa
import pyarrow.parquet as pq

from ..units import TEXT_STYLES
from .job import DATA_DIR, atomic_write_text

FORMATS = ("km", "txt", "jsonl", "npy")


class ExportError(ValueError):
    pass


def read_manifests(out: Path) -> list[dict]:
    manifests = [json.loads(p.read_text()) for p in sorted(out.glob("manifest*.json"))]
    if not manifests:
        raise ExportError(f"{out}: no manifest.json; not a finished `speechtok tokenize` output "
                          "(re-run the tokenize command to finish it)")
    if any(m["job"].get("command") != "tokenize" for m in manifests):
        raise ExportError(f"{out}: holds `{manifests[0]['job'].get('command')}` output, not tokens")
    ranks = {m["rank"] for m in manifests}
    nshard = manifests[0]["job"]["nshard"]
    if len(ranks) != nshard:
        missing = sorted(set(range(nshard)) - ranks)
        raise ExportError(f"{out}: ranks {missing} of {nshard} have not finished; run them first")
    return manifests


def read_rows(out: str | os.PathLike) -> tuple[pa.Table, list[dict]]:
    """All rows of a tokenized corpus in input order, and its manifests (one per rank)."""
    out = Path(out)
    manifests = read_manifests(out)
    files = [out / s["file"] for m in manifests for s in m["shards"]]
    table = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
    if table is None or table.num_rows == 0:
        raise ExportError(f"{out}: no rows to export")
    return table.sort_by("index"), manifests


def choose_stream(streams: list[str], stream: str | None, out: Path) -> str:
    """`stream`, checked against the corpus's streams; or its only stream."""
    if stream is None:
        if len(streams) > 1:
            raise ExportError(f"{out} has streams {', '.join(streams)}; choose one with --stream")
        return streams[0]
    if stream not in streams:
        raise ExportError(f"{out} has no stream {stream!r} (it has {', '.join(streams)})")
    return stream


def export(out: str | os.PathLike, fmt: str, dest: str | os.PathLike, split: str | None = None,
           style: str = "fairseq", allow_missing: bool = False) -> list[Path]:
    """Write `fmt` files of the corpus tokenized into `out` under `dest`; returns what was written."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if style not in TEXT_STYLES:
        raise ExportError(f"unknown text style {style!r}; choose from {', '.join(TEXT_STYLES)}")
    table, manifests = read_rows(out)
    streams, vocab = manifests[0]["streams"], manifests[0]["vocab_sizes"]
    split = split or manifests[0].get("split") or "data"
    errors = sum(m["errors"] for m in manifests)
    if fmt == "km" and errors and not allow_missing:
        raise ExportError(f"{errors} utterances failed to tokenize (see {out}/errors*.jsonl), so a .km "
                          "file would not line up with the input manifest; fix or drop them from "
                          "the manifest, or pass --allow-missing")
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
        prefix, suffix, sep = TEXT_STYLES[style]
        lines = []
        for row, utterance in enumerate(ids):
            columns = [sep.join(f"{prefix}{t}{suffix}" for t in codes[s][row]) for s in streams]
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
                name = f"{utterance}.npy" if len(streams) == 1 else f"{utterance}.{s}.npy"
                path = dest / name
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, np.asarray(codes[s][row], dtype=np.int64))
                written.append(path)
    return written
