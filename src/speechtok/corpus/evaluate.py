"""`speechtok eval`: unit quality of a tokenized corpus.

- `purity`: phone purity, cluster purity and PNMI against frame-level phone labels (see
  `speechtok.metrics`); units are expanded by their durations when the corpus was deduplicated
  and brought to the phones' frame rate. Utterances are matched by id, or by the id's last path
  component (fairseq names alignments by file stem).
- `stats`: per stream, codebook usage, unigram entropy / perplexity, tokens per second and
  bitrate (nominal and entropy-based).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..alignments import read_alignments
from ..metrics import JointCounts, StreamStats, TeacherQuality, resample_units, stream_stats, teacher_quality
from .export import ExportError, choose_stream, read_rows


def _units_of(table, stream: str) -> list[np.ndarray]:
    codes = table.column(stream).to_pylist()
    if f"{stream}_durations" in table.column_names:  # deduplicated: back to one unit per frame
        durations = table.column(f"{stream}_durations").to_pylist()
        return [np.repeat(np.asarray(c, dtype=np.int64), d) for c, d in zip(codes, durations)]
    return [np.asarray(c, dtype=np.int64) for c in codes]


def purity(out: str | os.PathLike, alignments: str | os.PathLike, stream: str | None = None,
           phone_rate: float = 100.0, keep_stress: bool = False, tier: str | None = None) -> TeacherQuality:
    out = Path(out)
    table, manifests = read_rows(out)
    stream = choose_stream(manifests[0]["streams"], stream, out)
    unit_rate = float(manifests[0]["frame_rate"])
    phones = read_alignments(alignments, phone_rate, keep_stress, tier)
    units = dict(zip(table.column("id").to_pylist(), _units_of(table, stream)))
    by_stem: dict[str, str] = {}
    for uid in units:
        by_stem.setdefault(uid.rsplit("/", 1)[-1], uid)

    pairs, missing = [], 0
    for uid, labels in phones.items():
        key = uid if uid in units else by_stem.get(uid.rsplit("/", 1)[-1])
        if key is None:
            missing += 1
            continue
        pairs.append((labels, resample_units(units[key], unit_rate, phone_rate)))
    if not pairs:
        raise ExportError(f"none of the {len(phones)} aligned utterances of {alignments} is in {out} "
                          f"(ids there look like {next(iter(units))!r})")
    return teacher_quality(JointCounts.collect(pairs, missing))


def stats(out: str | os.PathLike) -> list[StreamStats]:
    out = Path(out)
    table, manifests = read_rows(out)
    seconds = float(np.sum(table.column("num_samples").to_numpy())) / float(manifests[0]["sample_rate"])
    return [stream_stats(s, (np.asarray(c) for c in table.column(s).to_pylist()), int(k), seconds)
            for s, k in zip(manifests[0]["streams"], manifests[0]["vocab_sizes"])]
