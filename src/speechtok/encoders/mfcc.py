"""MFCC features of HuBERT iteration 1, as fairseq's `simple_kmeans/dump_mfcc_feature.py` makes them.

Kaldi MFCC with torchaudio's `compliance.kaldi.mfcc` defaults (13 cepstra, 23 mel bins, 25 ms
windows every 10 ms, povey window, pre-emphasis 0.97, lifter 22, no dither, no energy, snip_edges)
on float audio in [-1, 1], no CMVN; then deltas and delta-deltas (window 5, edges replicated) ->
[T, 39] at 100 Hz with T = 1 + (N - 400) // 160, every frame of an utterance computed at once (`KaldiMfcc`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

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

    def __call__(self, wave: np.ndarray) -> torch.Tensor:
        """[T, 13] with T = 1 + (N - window) // shift (0 for a wave shorter than a window)."""
        samples = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        count = max(0, 1 + (len(samples) - self.window) // self.shift)
        out = torch.empty(count, CEPSTRA)
        # frame-local: blocks give the same frames (to float32 rounding; the block size is fixed, so a
        # file's features do not depend on anything else)
        for first in range(0, count, self.BLOCK_FRAMES):
            last = min(first + self.BLOCK_FRAMES, count)
            piece = samples[first * self.shift : (last - 1) * self.shift + self.window]
            out[first:last] = self._frames(piece.unfold(0, self.window, self.shift))
        return out

    def _frames(self, frames: torch.Tensor) -> torch.Tensor:
        frames = frames - frames.mean(dim=1, keepdim=True)
        frames = frames - PREEMPHASIS * torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        spectrum = torch.fft.rfft(frames * self.taper, n=self.fft)
        power = (spectrum * spectrum.conj()).real  # |X|^2 (abs().pow(2) takes a square root, 8x slower)
        mel = (power @ self.banks).clamp_min(torch.finfo(torch.float32).eps).log()
        return mel @ self.cepstra


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


def deltas(features: torch.Tensor, win_length: int = 5) -> torch.Tensor:
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


class MFCCEncoder(Encoder):
    """39-dim MFCC + deltas + delta-deltas at 100 Hz; one stream named `mfcc`."""

    streams = ("mfcc",)
    feature_dim = 39  # 13 cepstra + deltas + delta-deltas
    chunk_samples = None  # frame-local: long files need no chunks, and fairseq uses none
    cpu_threads = 1  # every call is small (a file's frames): torch's thread pool only adds waiting

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
        out = []
        for wave in waves:
            ceps = self.kaldi(wave)
            d = deltas(ceps)
            out.append({"mfcc": torch.cat([ceps, d, deltas(d)], dim=1).to(self.device)})
        return out
