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

from ..encoders import Encoder, encoder_from_dict
from ..errors import InputError
from ..runtime.device import batch_seconds as default_or
from .inputs import Utterance, shard_range
from .reader import AudioReader
from .runner import Engine, JobResult, LocalEngine, window_samples
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


class FeaturesParts:
    """The reader and stage of the jobs that encode features (`extract`, the sampling pass of
    `fit-kmeans` / `hubert-labels`): a `runner.JobParts`. In the process that made it they come from
    the encoder given; pickled, it keeps the encoder's description (`to_dict`, layers, dtype), and a
    worker builds the encoder from it once, on `device`. Reading needs only `encoder.reading`."""

    def __init__(self, encoder: Encoder, batch_seconds: float, device: str | None = None):
        self.config, self.layers = encoder.to_dict(), list(getattr(encoder, "layers", ()))
        self.dtype = getattr(encoder, "dtype", None)
        self.reading, self.batch_seconds, self.device = encoder.reading, batch_seconds, device
        self._encoder: Encoder | None = encoder if device is None else None

    def encoder(self) -> Encoder:
        if self._encoder is None:
            options = {"device": self.device, **({"dtype": self.dtype} if self.dtype is not None else {})}
            self._encoder = encoder_from_dict(self.config, self.layers, **options)
        return self._encoder

    def reader(self, stream: bool = True) -> AudioReader:
        return AudioReader(self.reading)  # features of a whole file are one row: read whole

    def stage(self) -> FeaturesStage:
        return FeaturesStage(self.encoder(), self.batch_seconds)

    def __getstate__(self) -> dict:
        if self.config.get("type") == "ssl" and not self.config.get("model"):  # refused before any work
            raise InputError("this encoder wraps a model that cannot be loaded in another process: save it with "
                             "save_pretrained and load it by its directory")
        return {**self.__dict__, "_encoder": None}  # the model is loaded again, never sent


def features_job(encoder: Encoder, batch_seconds: float | None, engine: Engine | None) -> tuple[Engine, FeaturesParts, int]:
    """(engine, parts, window samples) of a job encoding features. The batch default is that of
    the device that encodes (a Ray engine's, not that of the driver's copy); it decides the
    windows, so every engine cuts the same ones."""
    engine = engine or LocalEngine()
    batch = default_or(batch_seconds, engine.device or encoder.device)
    return engine, FeaturesParts(encoder, batch, engine.device), window_samples(batch, encoder.sample_rate)


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
    engine: Engine | None = None,
    on_start=None,
    on_progress=None,
) -> JobResult:
    """Features of `utterances` into Parquet shards under `out` (resumable, like `tokenize`);
    `engine` as in `tokenize.tokenize_corpus`."""
    engine, parts, window = features_job(encoder, batch_seconds, engine)
    dim = encoder.feature_dim
    fields = [pa.field(s, pa.list_(pa.list_(pa.float32(), dim))) for s in encoder.streams]
    signature = {"command": "extract", "encoder": encoder.to_dict(), "streams": list(encoder.streams),
                 "dtype": str(getattr(encoder, "dtype", "float32"))}
    sink = ParquetShards(out, job_signature(signature, utterances, nshard, shard_size), fields, rank=rank,
                         nshard=nshard, shard_size=shard_size,
                         metadata={"encoder": encoder.to_dict(), "frame_rate": encoder.frame_rate,
                                   "sample_rate": encoder.sample_rate, "dims": {s: dim for s in encoder.streams}})
    return engine.run(utterances, shard_range(len(utterances), rank, nshard), parts, sink, window_samples=window,
                      workers=workers, strict=strict, on_start=on_start, on_progress=on_progress)


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
    """Write `{out}/{stream}/{split}_{rank}_{nshard}.npy` + `.len`; returns the .npy paths. Runs in
    this process: the files are one stream of frames in input order, written as they come."""
    engine, parts, window = features_job(encoder, batch_seconds, None)
    sink = FairseqArrays(out, split, {s: encoder.feature_dim for s in encoder.streams}, rank, nshard)
    engine.run(utterances, shard_range(len(utterances), rank, nshard), parts, sink, window_samples=window,
               workers=workers, on_start=on_start, on_progress=on_progress)
    return dict(sink.final)
