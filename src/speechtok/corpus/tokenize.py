"""`speechtok tokenize`: a corpus to Parquet rows of units, one row per utterance.

Columns: id, path, start, duration, index, num_samples (see `sinks.BASE_FIELDS`), then one list of
raw codes per stream, named after the stream (`L9`, `mfcc`, `q0`...). With `dedup`, each stream
is deduplicated on its own (as SpeechBrain does) and `<stream>_durations` holds the run lengths
in frames. With a unit BPE (`speechtok bpe train`), `<stream>_bpe` holds the BPE piece ids of its
stream's (stored, so deduplicated if `dedup`) codes.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pyarrow as pa

from ..audio import AudioError
from ..bpe import UnitBPE
from ..errors import InputError
from ..tokenizer import TokenizerBase
from ..units import Units
from .inputs import Utterance, shard_range
from .reader import STREAM_SECONDS, AudioReader, WaveStream
from .runner import ROW_ERROR, ROW_SAMPLES, Engine, JobResult, LocalEngine, window_samples
from .sinks import DEFAULT_SHARD_SIZE, ParquetShards, job_signature


def code_type(vocab_size: int) -> pa.DataType:
    """The smallest signed integer type holding ids 0..vocab_size-1 (readers dislike unsigned)."""
    return pa.int16() if vocab_size <= 2**15 else pa.int32()


def unit_fields(tokenizer: TokenizerBase, dedup: bool, bpe: UnitBPE | None = None) -> list[pa.Field]:
    fields = []
    for stream, k in zip(tokenizer.streams, tokenizer.vocab_sizes):
        fields.append(pa.field(stream, pa.list_(code_type(k))))
        if dedup:
            fields.append(pa.field(f"{stream}_durations", pa.list_(pa.int32())))
        if bpe is not None and bpe.stream == stream:
            fields.append(pa.field(f"{stream}_bpe", pa.list_(pa.int32())))
    return fields


def check_bpe(tokenizer: TokenizerBase, bpe: UnitBPE) -> None:
    """The BPE must have been trained on a stream of this tokenizer, with its K."""
    sizes = dict(zip(tokenizer.streams, tokenizer.vocab_sizes))
    if bpe.stream not in sizes:
        raise InputError(f"the BPE was trained on stream {bpe.stream!r}; this tokenizer has {', '.join(sizes)}")
    if sizes[bpe.stream] != bpe.k:
        raise InputError(f"the BPE was trained on K={bpe.k} units of {bpe.stream}; this tokenizer's have "
                         f"K={sizes[bpe.stream]}")


class UnitsStage:
    """Prepared waves -> the unit columns of their rows (a plain callable stage)."""

    def __init__(self, tokenizer: TokenizerBase, dedup: bool = False, bpe: UnitBPE | None = None):
        self.tokenizer = tokenizer
        self.dedup = dedup
        self.bpe = bpe

    def __call__(self, waves: list[np.ndarray | WaveStream]) -> list[dict]:
        """Rows of prepared waves; a `WaveStream` is encoded as it is read (its row also says its
        length, or why reading it failed: `runner.ROW_SAMPLES`, `ROW_ERROR`)."""
        whole = iter(self.tokenizer.encode_waves([w for w in waves if not isinstance(w, WaveStream)]))
        rows = []
        for wave in waves:
            if not isinstance(wave, WaveStream):
                rows.append(self._row(next(whole)))
                continue
            try:
                units = self.tokenizer.encode_stream(wave.blocks())
            except AudioError as error:
                rows.append({ROW_ERROR: error.reason})
                continue
            except Exception as error:  # noqa: BLE001 - as `AudioReader` does for files read whole
                rows.append({ROW_ERROR: f"{type(error).__name__}: {error}"})
                continue
            rows.append({**self._row(units), ROW_SAMPLES: units.num_samples})
        return rows

    def _row(self, units: Units) -> dict:
        row = units.to_row(self.dedup)  # cast to the columns' types (`unit_fields`) when written
        if self.bpe is not None:
            row[f"{self.bpe.stream}_bpe"] = self.bpe.encode(row[self.bpe.stream])
        return row


class TokenizeParts:
    """The tokenize job's reader and stage (`runner.JobParts`). In the process that made it they
    come from the loaded tokenizer; pickled, it keeps only the tokenizer's `LoadArgs`, and a
    worker loads the tokenizer from them once, on `device` if given."""

    def __init__(self, tokenizer: TokenizerBase, dedup: bool = False, bpe: UnitBPE | None = None,
                 device: str | None = None):
        self.load_args = tokenizer.load_args
        self.reading = tokenizer.reading
        self.can_stream = tokenizer.can_stream
        self.batch_seconds = tokenizer.batch_seconds  # a runtime choice the caller may have changed
        self.dedup, self.bpe, self.device = dedup, bpe, device
        self._tokenizer: TokenizerBase | None = tokenizer if device is None else None

    def tokenizer(self) -> TokenizerBase:
        if self._tokenizer is None:
            self._tokenizer = self.load_args.load(**({} if self.device is None else {"device": self.device}))
            self._tokenizer.batch_seconds = self.batch_seconds
        return self._tokenizer

    def reader(self, stream: bool = True) -> AudioReader:
        # the front end's audio settings only: no model, no GPU; long files are left to the stage
        return AudioReader(self.reading, STREAM_SECONDS if stream and self.can_stream else None)

    def stage(self) -> UnitsStage:
        return UnitsStage(self.tokenizer(), self.dedup, self.bpe)

    def __getstate__(self) -> dict:
        if self.load_args is None:  # refused here, in the process that sends it, before any work
            raise InputError("this tokenizer cannot be loaded in another process: save it with save_pretrained "
                             "and load it with speechtok.load")
        return {**self.__dict__, "_tokenizer": None}  # the model is loaded again, never sent


def tokenize_corpus(
    utterances: Sequence[Utterance],
    tokenizer: TokenizerBase,
    out: str | os.PathLike,
    *,
    dedup: bool = False,
    workers: int = 4,
    strict: bool = False,
    rank: int = 0,
    nshard: int = 1,
    shard_size: int = DEFAULT_SHARD_SIZE,
    dtype: str | None = None,
    split: str | None = None,
    bpe: UnitBPE | None = None,
    engine: Engine | None = None,
    on_start=None,
    on_progress=None,
) -> JobResult:
    """Tokenize `utterances` into Parquet shards under `out` (resumable; see `sinks.ParquetShards`).
    `split` names the corpus in exported files (`{split}.km`); `bpe` adds BPE ids of its stream.
    `engine`: where the work runs (default `LocalEngine`: this process; `ray_engine.RayEngine`:
    a Ray cluster, which loads the tokenizer again from `tokenizer.load_args`). Every engine
    writes the same output, so a job started with one can be resumed with another."""
    config = tokenizer.to_dict()
    signature = {"command": "tokenize", "tokenizer": config, "dedup": dedup, "dtype": dtype}
    if bpe is not None:
        check_bpe(tokenizer, bpe)
        signature["bpe"] = bpe.to_dict()
    mine = shard_range(len(utterances), rank, nshard)
    sink = ParquetShards(out, job_signature(signature, utterances, nshard, shard_size),
                         unit_fields(tokenizer, dedup, bpe), rank=rank, nshard=nshard, shard_size=shard_size,
                         metadata={"tokenizer": config, "frame_rate": tokenizer.frame_rate,
                                   "sample_rate": tokenizer.sample_rate, "streams": list(tokenizer.streams),
                                   "vocab_sizes": list(tokenizer.vocab_sizes), "dedup": dedup, "split": split,
                                   "tokenizer_source": tokenizer.source,
                                   "bpe": None if bpe is None else bpe.to_dict()})
    engine = engine or LocalEngine()
    return engine.run(utterances, mine, TokenizeParts(tokenizer, dedup, bpe, engine.device), sink,
                      window_samples=window_samples(tokenizer.batch_seconds, tokenizer.sample_rate),
                      workers=workers, strict=strict, on_start=on_start, on_progress=on_progress)
