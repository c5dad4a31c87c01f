"""Memory at scale: `export --format km` and `eval stats` on tokenized corpora of 10k to 1M utterances.

A real corpus of `--base` utterances (1-3 s of example speech, MFCC K=50, 100 Hz units) is
tokenized once into one shard; bigger corpora are made of hard links to that shard with a
manifest listing each copy as the next span of inputs (what a 1M-utterance job leaves, but for
the codes repeating). Each command runs in its own process; its peak RSS (ru_maxrss) and wall
time are reported, with the ratio to the smallest corpus (target: memory flat in corpus size).

    python benchmarks/scale.py                       # 10k, 100k, 1M utterances
    python benchmarks/scale.py --sizes 10000 100000  # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from common import machine, speech

from speechtok import KMeans, MFCCEncoder, Tokenizer

MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
if done.returncode:
    sys.exit(done.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - start)
"""


def measure(*args: str) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of `speechtok ARGS` in a fresh process."""
    out = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, "-m", "speechtok.cli", *args],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]) / 1024, float(out[1])


def base_corpus(root: Path, count: int) -> Path:
    """`count` utterances of 1-3 s tokenized (MFCC, K=50) into one shard."""
    rng = np.random.default_rng(0)
    waves = speech(3.0, 40)
    audio = root / "audio"
    audio.mkdir()
    for i in range(count):
        wave = waves[i % len(waves)][: int(rng.uniform(1.0, 3.0) * 16000)]
        sf.write(audio / f"utt{i:06d}.wav", wave, 16000)
    encoder = MFCCEncoder()
    frames = torch.cat([f["mfcc"] for f in encoder.encode_batch(waves[:10], sample_rate=16000)])
    Tokenizer(encoder, {"mfcc": KMeans.fit(frames, 50, seed=0)}).save_pretrained(root / "tok")
    out = root / "base"
    subprocess.run([sys.executable, "-m", "speechtok.cli", "tokenize", str(audio), "-t", str(root / "tok"),
                    "-o", str(out), "--shard-size", str(count), "-q"], check=True)
    return out


def scaled_corpus(base: Path, target: Path, copies: int) -> None:
    """`copies` hard links of the base shard, listed as consecutive spans of inputs."""
    manifest = json.loads((base / "manifest.json").read_text())
    shard = manifest["shards"][0]
    (target / "data").mkdir(parents=True)
    shards = []
    for i in range(copies):
        name = f"data/part-{i:05d}.parquet"
        os.link(base / shard["file"], target / name)
        span = shard["stop_index"] - shard["first_index"]
        shards.append({**shard, "file": name, "first_index": i * span, "stop_index": (i + 1) * span})
    manifest.update(shards=shards, rows=manifest["rows"] * copies)
    (target / "manifest.json").write_text(json.dumps(manifest))
    (target / "errors.jsonl").write_text("")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--base", type=int, default=1000, help="utterances really tokenized (one shard)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    base = base_corpus(root, args.base)
    print(f"machine: {machine()}")
    print(f"base shard: {args.base} utterances of 1-3 s, MFCC K=50 units at 100 Hz; "
          f"{sum(p.stat().st_size for p in (base / 'data').iterdir()) / 2**20:.2f} MiB")
    first = {}
    for size in args.sizes:
        corpus = root / f"c{size}"
        scaled_corpus(base, corpus, size // args.base)
        for name, command in [("export km", ["export", str(corpus), "--format", "km", "-o", str(root / f"km{size}")]),
                              ("eval stats", ["eval", "stats", str(corpus), "--json"])]:
            rss, seconds = measure(*command)
            first.setdefault(name, rss)
            print(f"{size:>9,} utterances  {name:<10}  peak RSS {rss:7.0f} MiB ({rss / first[name]:.2f}x the "
                  f"{args.sizes[0]:,} run)  {seconds:6.1f} s")
        if size != args.sizes[0]:
            subprocess.run(["rm", "-rf", str(corpus), str(root / f"km{size}")], check=True)


if __name__ == "__main__":
    main()
