"""Unit vocoder decode throughput: batched vs one sequence at a time, same units, same run.

A random unit HiFi-GAN of SpeechBrain's published hifigan-*-k1000-LibriTTS shape (6 layers x
K=1000, 1024-dim embeddings, 512 channels, upsampling 5x4x4x2x2, reflect padding). The units: utterances of
different lengths (2-12 s at 50 Hz). One at a time:
`UnitVocoder.decode` per utterance (SpeechBrain's `decode_unit` loop). Batched: `decode_batch`
with `--window` second windows (equal lengths across utterances, so they batch; exact, see
docs/architecture.md) and `--batch-seconds` of audio per batch. Reports audio seconds decoded per
second and the largest difference between the two outputs.

    python benchmarks/vocoder.py
    python benchmarks/vocoder.py --quick          # small widths, a smoke test
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import interleaved_median_times, machine

from speechtok import Units
from speechtok.vocoders import HifiGANConfig, UnitHifiGAN, UnitVocoder

LAYERS = (1, 3, 7, 12, 18, 23)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=16)
    parser.add_argument("--window", type=float, default=2.0, help="seconds per window when batched")
    parser.add_argument("--batch-seconds", type=float, default=32.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    print(f"machine: {machine()}; device {args.device}")
    rng = np.random.default_rng(0)
    lengths = rng.integers(100, 600, args.utterances)  # frames at 50 Hz: 2-12 s
    units = [Units(codes=rng.integers(0, 1000, (n, 6)), streams=[f"L{n}" for n in LAYERS], frame_rate=50,
                   vocab_sizes=[1000] * 6) for n in lengths]
    torch.manual_seed(0)
    sizes = dict(embedding_dim=64, upsample_initial_channel=64) if args.quick else dict(embedding_dim=1024)
    model = UnitHifiGAN(HifiGANConfig(vocab_size=6001, **sizes))
    single = UnitVocoder(model, LAYERS, 1000, device=args.device, batch_seconds=0)
    batched = UnitVocoder(model, LAYERS, 1000, device=args.device, window_seconds=args.window,
                          batch_seconds=args.batch_seconds)
    times, results = interleaved_median_times({
        "one at a time": lambda: [single.decode(u) for u in units],
        "batched": lambda: batched.decode_batch(units),
    }, args.repeats)
    audio = sum(int(n) for n in lengths) / 50
    diff = max(float(np.abs(a - b).max()) for a, b in zip(*results.values()))
    print(f"{len(units)} utterances, {audio:.0f} s of audio; batched: {args.window:g} s windows "
          f"(+{batched.context} frames context each side), {args.batch_seconds:g} s per batch")
    for name, t in times.items():
        print(f"  {name}: {t:.2f} s ({audio / t:.2f} audio s/s)")
    one, many = times.values()
    print(f"  ratio: {one / many:.2f}x; largest difference {diff:.2e}")


if __name__ == "__main__":
    main()
