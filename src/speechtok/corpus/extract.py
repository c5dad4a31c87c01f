"""`speechtok extract`: continuous features of a corpus, in Parquet shards or fairseq's layout.

Parquet (default): one row per utterance, one column per layer holding the [T, D] float32 frames
as a list of fixed-size lists; resumable like `tokenize`.

fairseq (`dump_hubert_feature.py`'s layout, what `learn_kmeans.py` reads): per layer,
`{split}_{rank}_{nshard}.npy` (all frames, concatenated) and `.len` (frames per utterance, one line
each, in input order). Every line of the input must appear, so a bad file stops the job; the
files are written under temporary names and renamed at the end (a killed run restarts its rank).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from ..encoders import Encoder
from ..runtime.device import batch_seconds as default_or
from .inputs import Utterance, shard_range
from .reader import AudioReader
from .runner import JobResult, run_corpus, window_samples
from .sinks import DEFAULT_SHARD_SIZE, FairseqArrays, ParquetShards, job_signature


class FeaturesStage:
    """Prepared waves -> {stream: [T, D] float32} per wave (a plain callable stage)."""

    def __init__(self, encoder: Encoder, batch_seconds: float | None = None):
        self.encoder = encoder
        self.batch_seconds = default_or(batch_seconds, encoder.device)

    def __call__(self, waves: list[np.ndarray]) -> list[dict]:
        per_wave = self.encoder.map_batches(waves, lambda f: {s: v.float().cpu().numpy() for s, v in f.items()},
                                            self.batch_seconds)
        return [{s: np.concatenate([c[s] for c in chunks]) for s in self.encoder.streams} for chunks in per_wave]


def extract_corpus(
    utterances: Sequence[Utterance],
    encoder: Encoder,
    out: str | os.PathLike,
    *,
    batch_seconds: float | None = None,
    workers: int = 4,
    strict: bool = False,
    rank: int = 0,
    nshard: int = 1,
    shard_size: int = DEFAULT_SHARD_SIZE,
    on_start=None,
    on_progress=None,
) -> JobResult:
    stage = FeaturesStage(encoder, batch_seconds)
    dim = encoder.feature_dim
    fields = [pa.field(s, pa.list_(pa.list_(pa.float32(), dim))) for s in encoder.streams]
    signature = {"command": "extract", "encoder": encoder.to_dict(), "streams": list(encoder.streams),
                 "dtype": str(getattr(encoder, "dtype", "float32"))}
    sink = ParquetShards(out, job_signature(signature, utterances, nshard, shard_size), fields, rank=rank,
                         nshard=nshard, shard_size=shard_size,
                         metadata={"encoder": encoder.to_dict(), "frame_rate": encoder.frame_rate,
                                   "sample_rate": encoder.sample_rate, "dims": {s: dim for s in encoder.streams}})
    return run_corpus(utterances, shard_range(len(utterances), rank, nshard), AudioReader(encoder.load), stage, sink,
                      window_samples=window_samples(stage.batch_seconds, encoder.sample_rate), workers=workers,
                      strict=strict, on_start=on_start, on_progress=on_progress)


def extract_fairseq(
    utterances: Sequence[Utterance],
    encoder: Encoder,
    out: str | os.PathLike,
    split: str,
    *,
    batch_seconds: float | None = None,
    workers: int = 4,
    rank: int = 0,
    nshard: int = 1,
    on_start=None,
    on_progress=None,
) -> dict[str, Path]:
    """Write `{out}/{stream}/{split}_{rank}_{nshard}.npy` + `.len`; returns the .npy paths."""
    stage = FeaturesStage(encoder, batch_seconds)
    sink = FairseqArrays(out, split, {s: encoder.feature_dim for s in encoder.streams}, rank, nshard)
    run_corpus(utterances, shard_range(len(utterances), rank, nshard), AudioReader(encoder.load), stage, sink,
               window_samples=window_samples(stage.batch_seconds, encoder.sample_rate), workers=workers,
               on_start=on_start, on_progress=on_progress)
    return dict(sink.final)
