"""What every encoder offers: audio in, per-frame features per stream out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Sequence, TypeVar

import numpy as np
import torch

from ..audio import AudioSource, load_audio
from ..batching import run_batched

R = TypeVar("R")

# Seconds of padded audio per batch; 0 = one utterance (chunk) per batch. On a GPU big batches keep
# the device busy; on a CPU one utterance already fills every core, and padding plus activations
# that overflow the caches only cost: 200 s batches ran 2.4x and 10 s batches 6% slower than one
# file at a time (WavLM-large, 2-core CPU; see docs/benchmarks.md).
DEFAULT_BATCH_SECONDS = {"cuda": 200.0, "cpu": 0.0}


def default_batch_seconds(device: torch.device | str) -> float:
    return DEFAULT_BATCH_SECONDS.get(torch.device(device).type, DEFAULT_BATCH_SECONDS["cuda"])


class Encoder(ABC):
    """An encoder turns float32 mono audio at `sample_rate` into [T, D] features per stream.

    Subclasses set `sample_rate`, `frame_rate`, `min_samples` (shortest input that gives a frame),
    `chunk_samples` (longest piece encoded at once; None = whole utterance) and `streams`, and
    implement `forward_batch`.
    """

    sample_rate: int
    frame_rate: float
    min_samples: int
    chunk_samples: int | None
    streams: tuple[str, ...]
    device: torch.device

    @abstractmethod
    def forward_batch(self, waves: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        """Features of each wave (each within `chunk_samples`): {stream: [T, D]} on `device`.
        The result of a wave does not depend on the others in the batch."""

    @abstractmethod
    def config(self) -> dict:
        """JSON-able description from which `encoders.from_config` rebuilds this encoder."""

    def prepare(self, wave: np.ndarray) -> np.ndarray:
        """Whole-utterance processing before chunking (e.g. waveform normalisation)."""
        return wave

    def load(
        self,
        source: AudioSource,
        sample_rate: int | None = None,
        start: float | None = None,
        duration: float | None = None,
    ) -> np.ndarray:
        """Read (the segment `start`, `duration` seconds of) `source`, downmix, resample and
        validate it, then `prepare` it."""
        wave = load_audio(source, self.sample_rate, sample_rate, self.min_samples, start=start, duration=duration)
        return self.prepare(wave)

    def map_batches(
        self,
        waves: Sequence[np.ndarray],
        fn: Callable[[dict[str, torch.Tensor]], R],
        batch_seconds: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[list[R]]:
        """`fn` of the features of every chunk of every prepared wave, batched by length
        (`batch_seconds` of padded audio; None: the device's default); per wave, the chunks'
        results in order."""
        batch_seconds = default_batch_seconds(self.device) if batch_seconds is None else batch_seconds

        def forward(batch: list[np.ndarray]) -> list[R]:
            return [fn(features) for features in self.forward_batch(batch)]

        return run_batched(
            waves,
            forward,
            chunk_samples=self.chunk_samples,
            min_samples=self.min_samples,
            max_batch_samples=int(batch_seconds * self.sample_rate),
            progress=progress,
        )

    def encode(self, source: AudioSource, sample_rate: int | None = None) -> dict[str, torch.Tensor]:
        """Continuous features of one input: {stream: [T, D]} on the CPU."""
        return self.encode_batch([source], sample_rate)[0]

    def encode_batch(
        self,
        sources: Sequence[AudioSource],
        sample_rate: int | None = None,
        batch_seconds: float | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Continuous features of each input, batched by length; equal to encoding each alone."""
        waves = [self.load(s, sample_rate) for s in sources]
        per_wave = self.map_batches(waves, lambda f: {k: v.float().cpu() for k, v in f.items()}, batch_seconds)
        return [
            {s: torch.cat([c[s] for c in chunks]) if chunks else torch.zeros(0, 0) for s in self.streams}
            for chunks in per_wave
        ]
