"""`speechtok fit-kmeans`: sample frames while streaming a corpus, fit k-means, write a tokenizer.

fairseq dumps the features of the whole (sampled) corpus to disk and loads them all into RAM; here
frames go through a fixed-size uniform sample (reservoir sampling, `sinks.FrameReservoirs`) per
stream as they are encoded, so memory is `max_frames x dim` per stream whatever the corpus size,
and several layers are sampled in one pass over the audio.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..encoders import Encoder
from ..errors import InputError
from ..quantizers import KMeans
from ..quantizers.kmeans import DEFAULT_ITERS
from ..tokenizer import Tokenizer
from .extract import features_job
from .inputs import Utterance
from .lock import hold
from .runner import Engine
from .sinks import FrameReservoirs

DEFAULT_MAX_FRAMES = 500_000  # per stream: 1.5 GiB at 768 dims


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
        raise InputError(f"--percent must be in (0, 100], got {percent}")
    count = max(1, math.ceil(len(utterances) * percent / 100))
    chosen = np.sort(np.random.default_rng(seed).choice(len(utterances), count, replace=False))
    return [utterances[i] for i in chosen]


def _fit_device(encoder: Encoder, engine: Engine | None):
    """Where k-means is fitted: the encoder's device; with an engine that encodes on a GPU
    elsewhere (the driver's encoder is a CPU copy), this process's GPU if it has one."""
    wanted = getattr(engine, "device", None)
    if wanted and wanted.startswith("cuda") and torch.cuda.is_available():
        return wanted
    return encoder.device


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
    engine: Engine | None = None,
    on_start=None,
    on_progress=None,
) -> tuple[Tokenizer, FitReport]:
    """Fit one k-means per encoder stream on frames sampled from `utterances`; save and return
    the tokenizer (written last, so an interrupted fit leaves no half tokenizer). `engine` runs
    the sampling pass (default: this process); the fit runs here, on the encoder's device. The
    sample, so the tokenizer, is the same with every engine."""
    if max_frames < k:
        raise InputError(f"--max-frames {max_frames} keeps fewer frames than the k={k} clusters need")
    with hold(out):  # one job writes the tokenizer directory at a time
        chosen = pick_utterances(utterances, percent, seed)
        engine, parts, window = features_job(encoder, batch_seconds, engine)
        sink = FrameReservoirs(encoder.streams, max_frames, seed)
        result = engine.run(chosen, range(len(chosen)), parts, sink, window_samples=window, workers=workers,
                            strict=strict, on_start=on_start, on_progress=on_progress)
        report = FitReport(files=result.ok, samples=result.samples,
                           failed=[(Utterance(e["id"], e["path"], e["start"], e["duration"]).describe(),
                                    e["reason"]) for e in result.errors])
        quantizers = {}
        for stream, reservoir in sink.reservoirs.items():
            frames = reservoir.sample()
            report.frames_seen[stream], report.frames_used[stream] = reservoir.seen, len(frames)
            if len(frames) < k:
                raise InputError(f"only {len(frames)} frames of {stream} from {report.files} readable files; "
                                 f"k={k} needs at least k")
            model = KMeans.fit(frames, k, iters=iters, seed=seed, device=_fit_device(encoder, engine))
            model.info.update({"frames_seen": reservoir.seen, "files": report.files, "percent": percent})
            quantizers[stream] = model
        tokenizer = Tokenizer(encoder, quantizers, batch_seconds=parts.batch_seconds)
        tokenizer.save_pretrained(out)
        return tokenizer, report
