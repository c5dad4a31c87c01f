"""`speechtok tokenize` of an MFCC corpus of many one-second files: this checkout vs a baseline commit.

5,000 one-second files of example speech, an MFCC K=50 tokenizer, default options. The baseline
(default: 352f176, before MFCC was computed a whole utterance at a time with one torch thread) is
checked out into a temporary git worktree and run from there; rounds alternate between the two,
each into a fresh OUT; the tokens of both are compared (the MFCC is computed another way, so a
frame almost equidistant from two centroids may flip). Reported: files/s of the whole
command (start-up included) and the ratio.

    python benchmarks/mfcc_corpus.py
    python benchmarks/mfcc_corpus.py --files 1000 --rounds 1 --baseline HEAD~3
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf
import torch
from common import machine, speech

from speechtok import KMeans, MFCCEncoder, Tokenizer

REPO = Path(__file__).resolve().parent.parent


def run(src: Path, audio: Path, tok: Path, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "speechtok.cli", "tokenize", str(audio), "-t", str(tok), "-o", str(out), "-q"],
                   env={**os.environ, "PYTHONPATH": str(src)}, check=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default="352f176")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    waves = speech(1.0, 200)
    rng = np.random.default_rng(0)
    audio = root / "audio"
    audio.mkdir()
    for i in range(args.files):
        sf.write(audio / f"u{i:05d}.wav", np.roll(waves[i % len(waves)], int(rng.integers(0, 16000))), 16000)
    encoder = MFCCEncoder()
    frames = torch.cat([f["mfcc"] for f in encoder.encode_batch(waves[:20], sample_rate=16000)])
    Tokenizer(encoder, {"mfcc": KMeans.fit(frames, 50, seed=0)}).save_pretrained(root / "tok")
    baseline = root / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(baseline), args.baseline], check=True)
    try:
        times = {"baseline": [], "this": []}
        for _ in range(args.rounds):
            times["baseline"].append(run(baseline / "src", audio, root / "tok", root / "out-baseline"))
            times["this"].append(run(REPO / "src", audio, root / "tok", root / "out-this"))
        codes = [np.concatenate(pq.read_table(root / f"out-{name}" / "data").sort_by("id").column("mfcc").to_pylist())
                 for name in ("this", "baseline")]
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)], check=True)
    print(f"machine: {machine()}")
    print(f"corpus: {args.files} one-second files, MFCC K=50, default options; median of {args.rounds} rounds")
    rate = {k: args.files / float(np.median(v)) for k, v in times.items()}
    for name, label in (("baseline", f"baseline {args.baseline}"), ("this", "this checkout")):
        print(f"{label:>20}: {np.median(times[name]):6.2f} s  {rate[name]:7.0f} files/s")
    differ = int((codes[0] != codes[1]).sum())
    print(f"this / baseline files/s: {rate['this'] / rate['baseline']:.2f}x; tokens that differ: {differ} of {len(codes[0])} "
          f"({100 * differ / len(codes[0]):.3f}%: float32 rounding of near-equidistant frames)")


if __name__ == "__main__":
    main()
