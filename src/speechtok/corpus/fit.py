"""`speechtok fit-kmeans`: sample frames while streaming a corpus, fit k-means, write a tokenizer.

fairseq dumps the features of the whole (sampled) corpus to disk and loads them all into RAM; here
frames go through a fixed-size uniform sample (reservoir sampling) per stream as they are
encoded, so memory is `max_frames x dim` per stream whatever the corpus size, and several layers
are sampled in one pass over the audio.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..encoders import Encoder
from ..encoders.base import default_batch_seconds
from ..quantizers import KMeans
from ..quantizers.kmeans import DEFAULT_ITERS
from ..tokenizer import Tokenizer
from .extract import FeaturesStage
from .inputs import Utterance
from .job import window_samples
from .memory import limit_heap_fragmentation
from .reader import AudioReader, read_ahead, windows

DEFAULT_MAX_FRAMES = 500_000  # per stream: 1.5 GiB at 768 dims


class Reservoir:
    """A uniform sample of at most `capacity` rows from a stream of row blocks (Vitter's
    algorithm R, a block at a time)."""

    def __init__(self, capacity: int, seed: int = 0):
        self.capacity = capacity
        self.seen = 0
        self.rng = np.random.default_rng(seed)
        self.rows: np.ndarray | None = None
        self.filled = 0

    def add(self, block: np.ndarray) -> None:
        if self.rows is None:
            self.rows = np.empty((self.capacity, block.shape[1]), dtype=np.float32)
        room = min(self.capacity - self.filled, len(block))
        if room > 0:
            self.rows[self.filled : self.filled + room] = block[:room]
            self.filled += room
        rest = block[room:]
        if len(rest):
            # row number i (0-based, counting all rows seen) replaces a random slot with
            # probability capacity / (i + 1); numpy applies repeated slots in order, as the
            # one-row-at-a-time algorithm would.
            positions = self.seen + room + np.arange(len(rest))
            slots = (self.rng.random(len(rest)) * (positions + 1)).astype(np.int64)
            keep = slots < self.capacity
            self.rows[slots[keep]] = rest[keep]
        self.seen += len(block)

    def sample(self) -> np.ndarray:
        return np.zeros((0, 0), np.float32) if self.rows is None else self.rows[: self.filled]


@dataclass
class FitReport:
    files: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (utterance, reason)
    samples: int = 0
    frames_seen: dict[str, int] = field(default_factory=dict)
    frames_used: dict[str, int] = field(default_factory=dict)


def pick_utterances(utterances: Sequence[Utterance], percent: float | None, seed: int) -> list[Utterance]:
    """A seeded random `percent` (0-100] of the utterances, in input order (fairseq's `percent`
    samples whole utterances too)."""
    if percent is None or percent >= 100:
        return list(utterances)
    if not 0 < percent <= 100:
        raise ValueError(f"--percent must be in (0, 100], got {percent}")
    count = max(1, math.ceil(len(utterances) * percent / 100))
    chosen = np.sort(np.random.default_rng(seed).choice(len(utterances), count, replace=False))
    return [utterances[i] for i in chosen]


def fit_kmeans_corpus(
    utterances: Sequence[Utterance],
    encoder: Encoder,
    k: int,
    out: str | os.PathLike,
    *,
    percent: float | None = None,
    max_frames: int = DEFAULT_MAX_FRAMES,
    iters: int = DEFAULT_ITERS,
    seed: int = 0,
    batch_seconds: float | None = None,
    workers: int = 4,
    strict: bool = False,
    on_start=None,
    on_progress=None,
) -> tuple[Tokenizer, FitReport]:
    """Fit one k-means per encoder stream on frames sampled from `utterances`; save and return
    the tokenizer (written last, so an interrupted fit leaves no half tokenizer)."""
    batch_seconds = default_batch_seconds(encoder.device) if batch_seconds is None else batch_seconds
    limit_heap_fragmentation()
    chosen = pick_utterances(utterances, percent, seed)
    reservoirs = {s: Reservoir(max_frames, seed + i) for i, s in enumerate(encoder.streams)}
    report = FitReport()
    features_of = FeaturesStage(encoder, batch_seconds)
    if on_start:
        on_start(len(chosen), 0)
    loaded = read_ahead(enumerate(chosen), AudioReader(encoder), workers=workers)
    for window in windows(loaded, window_samples(batch_seconds, encoder.sample_rate)):
        good = [item for item in window if item.wave is not None]
        for item in window:
            if item.wave is None:
                if strict:
                    raise ValueError(f"{item.utterance.describe()}: {item.error}")
                report.failed.append((item.utterance.describe(), item.error))
        for features in features_of([item.wave for item in good]) if good else []:
            for stream, block in features.items():  # in input order: the sample does not depend on batching
                reservoirs[stream].add(block)
        samples = sum(len(item.wave) for item in good)
        report.files += len(good)
        report.samples += samples
        if on_progress:
            on_progress(len(window), samples)
    quantizers = {}
    for stream, reservoir in reservoirs.items():
        frames = reservoir.sample()
        report.frames_seen[stream], report.frames_used[stream] = reservoir.seen, len(frames)
        if len(frames) < k:
            raise ValueError(f"only {len(frames)} frames of {stream} from {report.files} readable files; "
                             f"k={k} needs at least k")
        model = KMeans.fit(frames, k, iters=iters, seed=seed, device=encoder.device)
        model.info.update({"frames_seen": reservoir.seen, "files": report.files, "percent": percent})
        quantizers[stream] = model
    tokenizer = Tokenizer(encoder, quantizers, batch_seconds=batch_seconds)
    tokenizer.save_pretrained(out)
    return tokenizer, report
