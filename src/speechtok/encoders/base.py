"""What every encoder offers: audio in, per-frame features per stream out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from ..audio import AudioSource, Reading
from ..runtime import windows
from ..runtime.device import batch_seconds as default_or
from ..runtime.device import torch_threads

R = TypeVar("R")


class Encoder(ABC):
    """An encoder turns float32 mono audio at `sample_rate` into [T, D] features per stream.

    Subclasses set `sample_rate`, `frame_rate`, `min_samples` (shortest input that gives a frame),
    `chunk_samples` (longest piece encoded at once; None = whole utterance), `streams` and
    `feature_dim` (D of every stream), and implement `forward_batch` and `to_dict`.
    """

    sample_rate: int
    frame_rate: float
    min_samples: int
    chunk_samples: int | None
    streams: tuple[str, ...]
    feature_dim: int
    device: torch.device
    # torch threads its batches (and what is computed on their features, e.g. k-means assignment)
    # run with on a CPU; None: torch's default (all cores). Encoders whose every call is small set 1.
    cpu_threads: int | None = None
    # whether `feature_blocks` encodes a wave given in pieces exactly as `forward_batch` does the whole
    streaming: bool = False
    # batches hold at least this much audio whatever the device's default (encoders whose per-call
    # cost outweighs a short file's work, and that do not pad)
    min_batch_seconds: float = 0.0

    @abstractmethod
    def forward_batch(self, waves: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        """Features of each wave (each within `chunk_samples`): {stream: [T, D]} on `device`.
        The result of a wave does not depend on the others in the batch."""

    def feature_blocks(self, pieces: Iterable[np.ndarray]) -> Iterator[dict[str, torch.Tensor]]:
        """The features of one prepared wave given in consecutive pieces, in consecutive blocks of
        frames, equal to `forward_batch`'s of the whole wave (encoders with `streaming`)."""
        raise NotImplementedError(f"{type(self).__name__} encodes whole utterances only")

    @abstractmethod
    def to_dict(self) -> dict:
        """JSON-able description (with a `type` key) from which `encoders.encoder_from_dict`
        rebuilds this encoder."""

    def config(self) -> dict:  # the name before `to_dict`
        return self.to_dict()

    @property
    def reading(self) -> Reading:
        """How this encoder reads audio (subclasses add whole-utterance processing, e.g. waveform
        normalisation); picklable, without the model."""
        return Reading(self.sample_rate, self.min_samples)

    def load(
        self,
        source: AudioSource,
        sample_rate: int | None = None,
        start: float | None = None,
        duration: float | None = None,
    ) -> np.ndarray:
        """Read (the segment `start`, `duration` seconds of) `source`, downmix, resample and
        validate it, then prepare it as `reading` says."""
        return self.reading(source, sample_rate, start=start, duration=duration)

    def map_batches(
        self,
        waves: Sequence[np.ndarray],
        fn: Callable[[dict[str, torch.Tensor]], R],
        batch_seconds: float | None = None,
        progress: Callable[[int], None] | None = None,
        rowwise: bool = False,
    ) -> list[list[R]]:
        """`fn` of the features of every chunk of every prepared wave, batched by length
        (`batch_seconds` of padded audio; None: the device's default); per wave, the chunks'
        results in order. `rowwise`: `fn` gives an array with a row per frame that depends on that
        frame alone, so it is called once on a batch's frames together and its result split."""
        seconds = max(default_or(batch_seconds, self.device), self.min_batch_seconds)
        budget = int(seconds * self.sample_rate)
        pieces = windows.chunks([len(w) for w in waves], self.chunk_samples, self.min_samples)

        # on one CPU thread a row's result does not depend on the rows beside it (runtime.rowwise);
        # elsewhere (a GPU, several threads) each wave's frames keep a call of their own
        batched = rowwise and self.device.type == "cpu" and self.cpu_threads == 1

        def apply(features: list[dict[str, torch.Tensor]]) -> list[R]:
            if not batched or len(features) == 1:
                return [fn(f) for f in features]
            counts = [len(f[self.streams[0]]) for f in features]
            together = fn({s: torch.cat([f[s] for f in features]) for s in self.streams})
            return list(np.split(together, np.cumsum(counts)[:-1]))

        def forward(batch: list[windows.Window]) -> list[R]:
            results = apply(self.forward_batch([waves[w.item][w.start : w.stop] for w in batch]))
            if progress is not None:
                progress(sum(w.length for w in batch))
            return results

        with torch_threads(self.cpu_threads, self.device):
            return windows.run(pieces, len(waves), forward, budget, equal_lengths=False)

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
