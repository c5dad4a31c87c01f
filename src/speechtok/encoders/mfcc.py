"""MFCC features of HuBERT iteration 1, as fairseq's `simple_kmeans/dump_mfcc_feature.py` makes them.

Kaldi MFCC with torchaudio's `compliance.kaldi.mfcc` defaults (13 cepstra, 23 mel bins, 25 ms
windows every 10 ms, povey window, pre-emphasis 0.97, lifter 22, no dither, no energy, snip_edges)
on float audio in [-1, 1], no CMVN; then deltas and delta-deltas (window 5, edges replicated) ->
[T, 39] at 100 Hz with T = 1 + (N - 400) // 160, every frame of an utterance computed at once (`KaldiMfcc`).
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from ..runtime import rowwise
from ..runtime.device import resolve_device
from .base import Encoder

# Kaldi's `compute-mfcc-feats` options as torchaudio's `compliance.kaldi.mfcc` defaults them and
# fairseq's dump_mfcc_feature.py uses them.
FRAME_SECONDS, SHIFT_SECONDS = 0.025, 0.010
PREEMPHASIS = 0.97
MEL_BINS, LOW_HZ = 23, 20.0
CEPSTRA, LIFTER = 13, 22.0


class KaldiMfcc:
    """Kaldi MFCC of whole utterances, every frame at once in torch (float32, as torchaudio computes
    it): frames (snip_edges) -> DC removed -> pre-emphasis (x[-1] := x[0]) -> povey window ->
    |rfft|^2 over the window padded to a power of two -> triangular mel banks (the Nyquist bin
    left out, as Kaldi does) -> log (floored at float32 eps) -> orthonormal DCT-II -> lifter.

    Written here rather than called from kaldi-native-fbank (the tests' reference): that computes a
    frame at a time and took 1.2 ms per second of audio, 5x this, and most of an MFCC corpus job."""

    BLOCK_FRAMES = 20_000  # frames computed at once (200 s at 100 Hz): memory does not grow with the file

    def __init__(self, sample_rate: int):
        self.window = int(sample_rate * FRAME_SECONDS)
        self.shift = int(sample_rate * SHIFT_SECONDS)
        self.fft = 1 << math.ceil(math.log2(self.window))
        n = np.arange(self.window)
        self.taper = torch.from_numpy(((0.5 - 0.5 * np.cos(2 * np.pi * n / (self.window - 1))) ** 0.85).astype(np.float32))
        self.banks = torch.from_numpy(_mel_banks(sample_rate, self.fft).T.astype(np.float32))  # [fft/2 + 1, bins]
        k, j = np.arange(CEPSTRA)[:, None], np.arange(MEL_BINS)[None, :]
        dct = np.sqrt(2.0 / MEL_BINS) * np.cos(np.pi / MEL_BINS * (j + 0.5) * k)
        dct[0] = np.sqrt(1.0 / MEL_BINS)
        lifter = 1.0 + 0.5 * LIFTER * np.sin(np.pi * np.arange(CEPSTRA) / LIFTER)
        self.cepstra = torch.from_numpy((dct.T * lifter).astype(np.float32))  # [bins, 13], lifter folded in

    def frame_count(self, samples: int) -> int:
        """T = 1 + (N - window) // shift (0 for a wave shorter than a window)."""
        return max(0, 1 + (samples - self.window) // self.shift)

    def __call__(self, wave: np.ndarray) -> torch.Tensor:
        """[T, 13], T = `frame_count(len(wave))`."""
        samples = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        count = self.frame_count(len(samples))
        out = torch.empty(count, CEPSTRA)
        # frame-local: blocks give the same frames (to float32 rounding; the block size is fixed, so a
        # file's features do not depend on anything else)
        for first in range(0, count, self.BLOCK_FRAMES):
            last = min(first + self.BLOCK_FRAMES, count)
            out[first:last] = self._block(samples[first * self.shift : (last - 1) * self.shift + self.window])
        return out

    def many(self, waves: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """`self(wave)` of each wave; the frames of short waves are computed together (one call per
        batch, not per file: per-file calls were most of an MFCC job on short files). Equal to one
        wave at a time: every op is row-wise (one torch thread: the encoder's `cpu_threads`)."""
        counts = [self.frame_count(len(w)) for w in waves]
        if sum(counts) > self.BLOCK_FRAMES or len(waves) == 1:
            return [self(w) for w in waves]
        frames = [torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)).unfold(0, self.window, self.shift)
                  for w, n in zip(waves, counts) if n]
        together = self._frames(torch.cat(frames)) if frames else torch.zeros(0, CEPSTRA)
        return list(torch.split(together, counts))

    def stream(self, pieces: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
        """The frames of a wave given in consecutive pieces, BLOCK_FRAMES at a time: the same blocks,
        so the same values, as `__call__` of the whole wave. Holds one block of samples."""
        span = (self.BLOCK_FRAMES - 1) * self.shift + self.window  # the samples of a whole block
        held: list[np.ndarray] = []
        size = 0
        for piece in pieces:
            held.append(np.asarray(piece, dtype=np.float32))
            size += len(piece)
            if size < span:
                continue
            samples = np.concatenate(held)
            while len(samples) >= span:
                yield self._block(torch.from_numpy(samples[:span]))
                samples = samples[self.BLOCK_FRAMES * self.shift :]
            held, size = [samples], len(samples)
        if size >= self.window:
            yield self._block(torch.from_numpy(np.concatenate(held)))

    def _block(self, samples: torch.Tensor) -> torch.Tensor:
        """The frames of `samples` (the whole of the last one; snip_edges)."""
        return self._frames(samples.unfold(0, self.window, self.shift))

    def _frames(self, frames: torch.Tensor) -> torch.Tensor:
        frames = frames - frames.mean(dim=1, keepdim=True)
        frames = frames - PREEMPHASIS * torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        spectrum = torch.fft.rfft(frames * self.taper, n=self.fft)
        power = (spectrum * spectrum.conj()).real  # |X|^2 (abs().pow(2) takes a square root, 8x slower)
        mel = rowwise.matmul(power, self.banks).clamp_min(torch.finfo(torch.float32).eps).log()
        return rowwise.matmul(mel, self.cepstra)


def _mel_banks(sample_rate: int, fft: int) -> np.ndarray:
    """[bins, fft/2 + 1] Kaldi's triangular filters, equally spaced on 1127 ln(1 + f / 700) from
    LOW_HZ to Nyquist; the last (Nyquist) FFT bin gets no weight."""
    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    edges = np.linspace(mel(LOW_HZ), mel(sample_rate / 2), MEL_BINS + 2)  # bin b spans edges[b]..edges[b + 2]
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    at = mel(np.arange(fft // 2) * sample_rate / fft)[None, :]
    rising, falling = (at - left) / (centre - left), (right - at) / (right - centre)
    banks = np.zeros((MEL_BINS, fft // 2 + 1))
    banks[:, : fft // 2] = np.where((at > left) & (at < right), np.minimum(rising, falling), 0.0)
    return banks


DELTA_WINDOW = 5  # fairseq's compute_deltas default


def deltas(features: torch.Tensor, win_length: int = DELTA_WINDOW) -> torch.Tensor:
    """torchaudio's `compute_deltas` over time of [T, D]:
    d_t = sum_{n=1..N} n (c_{t+n} - c_{t-n}) / (2 sum n^2), edge frames replicated."""
    n = (win_length - 1) // 2
    denom = 2 * sum(i * i for i in range(1, n + 1))
    padded = torch.cat([features[:1].expand(n, -1), features, features[-1:].expand(n, -1)])
    t = len(features)
    out = torch.zeros_like(features)
    for i in range(1, n + 1):
        out += i * (padded[n + i : n + i + t] - padded[n - i : n - i + t])
    return out / denom


def with_deltas(ceps: torch.Tensor) -> torch.Tensor:
    """[T, 39]: cepstra, their deltas and delta-deltas."""
    d = deltas(ceps)
    return torch.cat([ceps, d, deltas(d)], dim=1)


def with_deltas_many(ceps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """`with_deltas` of each utterance's cepstra, computed over all of them at once: each frame's
    neighbours are gathered within its own utterance (its edge frames replicated), and combined
    with `deltas`' operations in `deltas`' order, so the values are the same bit for bit."""
    lengths = [len(c) for c in ceps]
    if len(ceps) == 1 or not sum(lengths):
        return [with_deltas(c) for c in ceps]
    starts = np.repeat(np.cumsum([0, *lengths[:-1]]), lengths)
    ends = np.repeat(np.cumsum(lengths) - 1, lengths)
    frame = np.arange(len(starts))
    half = (DELTA_WINDOW - 1) // 2
    near = {k: torch.from_numpy(np.clip(frame + k, starts, ends)) for k in range(-half, half + 1) if k}
    denom = 2 * sum(i * i for i in range(1, half + 1))

    def gathered_deltas(x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        for i in range(1, half + 1):
            out += i * (x[near[i]] - x[near[-i]])
        return out / denom

    c = torch.cat(list(ceps))
    d = gathered_deltas(c)
    return list(torch.split(torch.cat([c, d, gathered_deltas(d)], dim=1), lengths))


DELTA_CONTEXT = 4  # frames each side a delta-delta depends on (two windows of 5)


class MFCCEncoder(Encoder):
    """39-dim MFCC + deltas + delta-deltas at 100 Hz; one stream named `mfcc`."""

    streams = ("mfcc",)
    feature_dim = 39  # 13 cepstra + deltas + delta-deltas
    chunk_samples = None  # frame-local: long files need no chunks, and fairseq uses none
    cpu_threads = 1  # every call is small (a file's frames): torch's thread pool only adds waiting
    # a file's work is too small to run alone (no padding, so batching is free); larger batches were
    # slower (60 s: 2.3x the time of 2 s on a 2-core CPU: the frame tensors leave the caches)
    min_batch_seconds = 2.0
    streaming = True  # `feature_blocks`: long files are encoded as they are read

    def __init__(self, sample_rate: int = 16000, device: str | torch.device = "cpu"):
        self.sample_rate = int(sample_rate)
        self.kaldi = KaldiMfcc(self.sample_rate)
        self.window, self.shift = self.kaldi.window, self.kaldi.shift
        self.frame_rate = self.sample_rate / self.shift
        self.min_samples = self.window
        self.device = resolve_device(device)

    def to_dict(self) -> dict:
        return {"type": "mfcc", "sample_rate": self.sample_rate}

    def mfcc(self, wave: np.ndarray) -> np.ndarray:
        """[T, 13] Kaldi MFCC of float audio in [-1, 1]."""
        return self.kaldi(wave).numpy()

    def forward_batch(self, waves: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        return [{"mfcc": f.to(self.device)} for f in with_deltas_many(self.kaldi.many(waves))]

    def feature_blocks(self, pieces: Iterable[np.ndarray]) -> Iterator[dict[str, torch.Tensor]]:
        """The features of a wave given in consecutive pieces, a block of frames at a time; equal to
        `forward_batch` of the whole wave (deltas are linear in a few neighbouring frames, so each
        block is computed with DELTA_CONTEXT frames of real neighbours, or the replicated edge where
        the wave ends, as the whole wave's are)."""
        held = torch.zeros(0, CEPSTRA)  # cepstra not emitted yet, after up to DELTA_CONTEXT emitted ones
        first = 0  # the frame number of held[0]
        done = 0  # frames emitted
        for ceps in self.kaldi.stream(pieces):
            held = torch.cat([held, ceps])
            end = first + len(held)
            if end - DELTA_CONTEXT > done:
                yield {"mfcc": with_deltas(held)[done - first : end - DELTA_CONTEXT - first].to(self.device)}
                done = end - DELTA_CONTEXT
                keep = max(first, done - DELTA_CONTEXT)
                held, first = held[keep - first :], keep
        if first + len(held) > done:
            yield {"mfcc": with_deltas(held)[done - first :].to(self.device)}
