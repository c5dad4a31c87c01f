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
from ..encoders.base import default_batch_seconds
from .inputs import Utterance, shard_range
from .job import DEFAULT_SHARD_SIZE, JobResult, ShardedJob, UtteranceFailed, window_samples
from .memory import limit_heap_fragmentation
from .reader import AudioReader, read_ahead, windows


class FeaturesStage:
    """Prepared waves -> {stream: [T, D] float32} per wave (a plain callable stage)."""

    def __init__(self, encoder: Encoder, batch_seconds: float):
        self.encoder = encoder
        self.batch_seconds = batch_seconds

    def __call__(self, waves: list[np.ndarray]) -> list[dict]:
        per_wave = self.encoder.map_batches(waves, lambda f: {s: v.float().cpu().numpy() for s, v in f.items()},
                                            self.batch_seconds)
        return [{s: np.concatenate([c[s] for c in chunks]) for s in self.encoder.streams} for chunks in per_wave]


def feature_dims(encoder: Encoder) -> dict[str, int]:
    """Feature size of each stream, from a forward pass over silence."""
    probe = encoder.forward_batch([np.zeros(encoder.min_samples, np.float32)])[0]
    return {s: int(v.shape[-1]) for s, v in probe.items()}


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
    batch_seconds = default_batch_seconds(encoder.device) if batch_seconds is None else batch_seconds
    dims = feature_dims(encoder)
    fields = [pa.field(s, pa.list_(pa.list_(pa.float32(), dims[s]))) for s in encoder.streams]
    signature = {"command": "extract", "encoder": encoder.config(), "streams": list(encoder.streams),
                 "dtype": str(getattr(encoder, "dtype", "float32"))}
    job = ShardedJob(out, utterances, signature, fields, rank=rank, nshard=nshard, shard_size=shard_size,
                     strict=strict, metadata={"encoder": encoder.config(), "frame_rate": encoder.frame_rate,
                                              "sample_rate": encoder.sample_rate, "dims": dims})
    return job.run(AudioReader(encoder), FeaturesStage(encoder, batch_seconds),
                   window_samples=window_samples(batch_seconds, encoder.sample_rate), workers=workers,
                   on_start=on_start, on_progress=on_progress)


class NpyAppender:
    """A float32 [rows, dim] .npy written row block by row block; the header is fixed at the end.

    The header is padded to a fixed 128 bytes (valid in format 1.0: spaces before the newline), so
    the final shape can be written over it without moving the data.
    """

    HEADER = 128

    def __init__(self, path: Path, dim: int):
        self.path, self.dim, self.rows = path, dim, 0
        self.file = open(path, "wb")
        self.file.write(b"\0" * self.HEADER)

    def append(self, block: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
        self.rows += len(block)

    def close(self) -> None:
        text = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (self.rows, self.dim)
        body = text.ljust(self.HEADER - 10 - 1) + "\n"
        header = b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")
        assert len(header) == self.HEADER
        self.file.seek(0)
        self.file.write(header)
        self.file.close()


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
    out = Path(out)
    limit_heap_fragmentation()
    batch_seconds = default_batch_seconds(encoder.device) if batch_seconds is None else batch_seconds
    mine = [utterances[i] for i in shard_range(len(utterances), rank, nshard)]
    dims = feature_dims(encoder)
    stem = f"{split}_{rank}_{nshard}"
    final, arrays, lengths = {}, {}, {}
    for s in encoder.streams:
        (out / s).mkdir(parents=True, exist_ok=True)
        final[s] = out / s / f"{stem}.npy"
        arrays[s] = NpyAppender(final[s].with_name(stem + ".npy.tmp"), dims[s])
        lengths[s] = []
    stage = FeaturesStage(encoder, batch_seconds)
    if on_start:
        on_start(len(mine), 0)
    loaded = read_ahead(enumerate(mine), AudioReader(encoder), workers=workers)
    try:
        for window in windows(loaded, window_samples(batch_seconds, encoder.sample_rate)):
            for item in window:
                if item.wave is None:
                    raise UtteranceFailed(f"{item.utterance.describe()}: {item.error} (the fairseq layout "
                                          "needs every input line; remove it from the manifest)")
            for features in stage([item.wave for item in window]):
                for s in encoder.streams:
                    arrays[s].append(features[s])
                    lengths[s].append(len(features[s]))
            if on_progress:
                on_progress(len(window), sum(len(item.wave) for item in window))
    except BaseException:
        for s in encoder.streams:
            arrays[s].file.close()
            arrays[s].path.unlink(missing_ok=True)
        raise
    finally:
        loaded.close()
    for s in encoder.streams:
        arrays[s].close()
        os.replace(arrays[s].path, final[s])
        len_tmp = final[s].with_name(stem + ".len.tmp")
        len_tmp.write_text("".join(f"{n}\n" for n in lengths[s]))
        os.replace(len_tmp, final[s].with_name(stem + ".len"))
    return final
