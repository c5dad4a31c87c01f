"""Codec encode throughput and peak memory: speechtok vs transformers' model on whole files, batch 1.

The reference is what transformers documents for DAC: its feature extractor (pads to the hop),
then `model.encode(input_values)` on each whole file, one at a time. speechtok runs
`CodecTokenizer.encode_batch` with its defaults (30 s windows with receptive-field context; one
window per batch on CPU). Both use the same random model of the published DAC 16 kHz shape (12
codebooks x 1024, 76M parameters); timed rounds alternate the two; codes are compared.

Peak memory is measured in a fresh process per method and length (peak RSS), on a signal of each
length: encoding, and decoding codes of that length.

    python benchmarks/codec.py                          # throughput on 6 files of 3-48 s + memory at 60/300 s
    python benchmarks/codec.py --memory-seconds 3600 --memory-methods speechtok   # a 1-hour file
    python benchmarks/codec.py --quick                  # a small model, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import interleaved_median_times, machine, speech

SR = 16000
HOP = 320


def dac_model(directory: Path, quick: bool) -> None:
    from transformers import DacConfig, DacModel

    size = dict(encoder_hidden_size=16, decoder_hidden_size=256) if quick else dict(
        encoder_hidden_size=64, decoder_hidden_size=1536)
    torch.manual_seed(0)
    DacModel(DacConfig(**size, downsampling_ratios=[2, 4, 5, 8], n_codebooks=12, codebook_size=1024,
                       codebook_dim=8, sampling_rate=SR)).save_pretrained(directory)


def reference_encode(model, extractor, waves):
    """transformers' documented use: feature extractor, then the model on each whole file."""
    out = []
    with torch.inference_mode():
        for wave in waves:
            inputs = extractor(raw_audio=wave, sampling_rate=SR, return_tensors="pt")
            out.append(model.encode(inputs["input_values"]).audio_codes[0].T.numpy())
    return out


def peak_rss_mb(reset: bool = False) -> float:
    """Linux's high-water mark of this process's RSS (VmHWM); `reset` starts it again from the
    current RSS (clear_refs 5), so loading the model does not hide what a call needs."""
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_one(model_dir: str, method: str, task: str, seconds: float) -> dict:
    """Run in a fresh process: peak RSS of one encode or decode of `seconds` of audio, counted
    from the RSS after loading the model and making the input."""
    from transformers import DacFeatureExtractor, DacModel

    import speechtok

    rng = np.random.default_rng(0)
    n = int(seconds * SR)
    wave = (0.1 * rng.standard_normal(n)).astype(np.float32)
    codes = rng.integers(0, 1024, (-(-n // HOP), 12))
    if method == "speechtok":
        tok = speechtok.load(model_dir)
        base = peak_rss_mb(reset=True)
        start = time.perf_counter()
        if task == "encode":
            tok.encode(wave, SR)
        else:
            tok.decode(speechtok.Units(codes=codes, streams=tok.streams, frame_rate=tok.frame_rate,
                                       vocab_sizes=tok.vocab_sizes, num_samples=n))
    else:
        model = DacModel.from_pretrained(model_dir).eval()
        base = peak_rss_mb(reset=True)
        start = time.perf_counter()
        with torch.inference_mode():
            if task == "encode":
                inputs = DacFeatureExtractor(sampling_rate=SR, hop_length=HOP)(raw_audio=wave, sampling_rate=SR,
                                                                               return_tensors="pt")
                model.encode(inputs["input_values"])
            else:
                model.decode(audio_codes=torch.from_numpy(codes.T[None].copy()))
    peak = peak_rss_mb()
    return {"method": method, "task": task, "seconds": seconds, "call_peak_mb": round(peak - base),
            "before_call_mb": round(base), "wall_s": round(time.perf_counter() - start, 1)}


def measure_memory(model_dir: Path, lengths: list[float], methods: list[str], tasks: list[str]) -> list[dict]:
    rows = []
    for seconds in lengths:
        for task in tasks:
            for method in methods:
                cmd = [sys.executable, __file__, "--child", str(model_dir), method, task, str(seconds)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:  # e.g. killed for memory: that is the result
                    rows.append({"method": method, "task": task, "seconds": seconds,
                                 "failed": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]})
                else:
                    rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="3,6,12,24,48,24", help="seconds of each file")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds (each runs both), after a warm-up")
    parser.add_argument("--memory-seconds", default="60,300", help="signal lengths for peak memory ('' to skip)")
    parser.add_argument("--memory-methods", default="speechtok,transformers")
    parser.add_argument("--memory-tasks", default="encode,decode")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small model, short files")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model_dir, method, task, seconds = args.child
        print(json.dumps(measure_one(model_dir, method, task, float(seconds))))
        return

    from transformers import DacFeatureExtractor, DacModel

    import speechtok

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "dac"
        dac_model(model_dir, args.quick)
        if not args.skip_throughput:
            lengths = [float(s) for s in args.lengths.split(",")]
            if args.quick:
                lengths = [min(s, 6.0) for s in lengths]
            clips = speech(max(lengths), len(lengths), SR)
            waves = [c[: int(s * SR)] for c, s in zip(clips, lengths)]
            model = DacModel.from_pretrained(model_dir).eval()
            extractor = DacFeatureExtractor(sampling_rate=SR, hop_length=HOP)
            tok = speechtok.load(model_dir)
            times, results = interleaved_median_times({
                "transformers (whole file, batch 1)": lambda: reference_encode(model, extractor, waves),
                "speechtok": lambda: [u.codes for u in tok.encode_batch(waves, SR)],
            }, args.repeats)
            audio = sum(lengths)
            ref, ours = results.values()
            same = sum(int((a == b).sum()) for a, b in zip(ref, ours)) / sum(a.size for a in ref)
            (ref_name, ref_t), (our_name, our_t) = times.items()
            print(f"{len(waves)} files, {audio:.0f} s of audio (lengths {','.join(f'{s:g}' for s in lengths)} s), "
                  f"DAC 16 kHz {'small' if args.quick else 'full'} shape, 12 codebooks")
            print(f"  {ref_name}: {ref_t:.2f} s ({audio / ref_t:.2f}x realtime)")
            print(f"  {our_name}: {our_t:.2f} s ({audio / our_t:.2f}x realtime)")
            print(f"  ratio: {ref_t / our_t:.2f}x; codes identical: {100 * same:.2f}%")
        if args.memory_seconds:
            print("peak RSS during the call above what the process held before it (model loaded, input made); "
                  "fresh process per row:")
            measure_memory(model_dir, [float(s) for s in args.memory_seconds.split(",")],
                           args.memory_methods.split(","), args.memory_tasks.split(","))


if __name__ == "__main__":
    main()
