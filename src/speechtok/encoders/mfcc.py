"""MFCC features of HuBERT iteration 1, as fairseq's `simple_kmeans/dump_mfcc_feature.py` makes them.

Kaldi MFCC with torchaudio's `compliance.kaldi.mfcc` defaults (13 cepstra, 23 mel bins, 25 ms
windows every 10 ms, povey window, pre-emphasis 0.97, lifter 22, no dither, no energy, snip_edges)
on float audio in [-1, 1], no CMVN; then deltas and delta-deltas (window 5, edges replicated) ->
[T, 39] at 100 Hz with T = 1 + (N - 400) // 160. The MFCC itself is computed by kaldi-native-fbank.
"""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np
import torch

from ..runtime.device import resolve_device
from .base import Encoder


def mfcc_options(sample_rate: int) -> knf.MfccOptions:
    opts = knf.MfccOptions()
    opts.frame_opts.samp_freq = float(sample_rate)
    opts.frame_opts.dither = 0.0
    opts.frame_opts.frame_length_ms = 25.0
    opts.frame_opts.frame_shift_ms = 10.0
    opts.frame_opts.preemph_coeff = 0.97
    opts.frame_opts.remove_dc_offset = True
    opts.frame_opts.window_type = "povey"
    opts.frame_opts.round_to_power_of_two = True
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = 23
    opts.mel_opts.low_freq = 20.0
    opts.mel_opts.high_freq = 0.0  # Nyquist
    opts.num_ceps = 13
    opts.use_energy = False
    opts.raw_energy = True
    opts.cepstral_lifter = 22.0
    return opts


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
        self.options = mfcc_options(self.sample_rate)
        self.window = int(self.sample_rate * 0.025)
        self.shift = int(self.sample_rate * 0.010)
        self.frame_rate = self.sample_rate / self.shift
        self.min_samples = self.window
        self.device = resolve_device(device)

    def to_dict(self) -> dict:
        return {"type": "mfcc", "sample_rate": self.sample_rate}

    def mfcc(self, wave: np.ndarray) -> np.ndarray:
        """[T, 13] Kaldi MFCC of float audio in [-1, 1]."""
        computer = knf.OnlineMfcc(self.options)
        computer.accept_waveform(float(self.sample_rate), np.ascontiguousarray(wave, dtype=np.float32))
        computer.input_finished()
        frames = computer.num_frames_ready
        out = np.empty((frames, self.options.num_ceps), dtype=np.float32)
        for i in range(frames):
            out[i] = computer.get_frame(i)
        return out

    def forward_batch(self, waves: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        out = []
        for wave in waves:
            ceps = torch.from_numpy(self.mfcc(wave))
            d = deltas(ceps)
            out.append({"mfcc": torch.cat([ceps, d, deltas(d)], dim=1).to(self.device)})
        return out
