"""Memory of one long file: a 5-minute and a 1-hour 44.1 kHz stereo FLAC, read and tokenized.

Each measurement runs in a fresh process; peak RSS is its ru_maxrss. `read` is `load_audio` to
16 kHz mono (what every job does first); `tokenize` is `speechtok tokenize` with an MFCC K=50
tokenizer (the whole job: read, features, units, Parquet).

    python benchmarks/long_file.py
    python benchmarks/long_file.py --minutes 5 20     # quicker
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from common import machine, speech

from speechtok import KMeans, MFCCEncoder, Tokenizer

READ = """
import resource, sys, time
from speechtok import load_audio
start = time.perf_counter()
wave = load_audio(sys.argv[1], 16000)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - start, len(wave))
"""

TOKENIZE = """
import resource, subprocess, sys, time
start = time.perf_counter()
subprocess.run([sys.executable, "-m", "speechtok.cli", "tokenize", *sys.argv[1:], "-q"], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - start)
"""


def write_long_flac(path: Path, minutes: float, clip: np.ndarray) -> None:
    """`minutes` of 44.1 kHz stereo: the clip tiled, a different gain per channel, written in blocks."""
    total, block = int(minutes * 60 * 44100), 44100 * 30
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", 44100, 2, subtype="PCM_16", format="FLAC") as f:
        for at in range(0, total, block):
            n = min(block, total - at)
            mono = np.resize(clip, n) + 0.003 * rng.standard_normal(n).astype(np.float32)
            f.write(np.stack([0.9 * mono, 0.7 * mono], axis=1))


def run(code: str, *args: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True).stdout
    return [float(v) for v in out.split()]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 60])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    clip = np.concatenate([np.asarray(speech(3.0, 8, sr=44100))]).reshape(-1)
    encoder = MFCCEncoder()
    waves = speech(3.0, 10)
    frames = torch.cat([f["mfcc"] for f in encoder.encode_batch(waves, sample_rate=16000)])
    Tokenizer(encoder, {"mfcc": KMeans.fit(frames, 50, seed=0)}).save_pretrained(root / "tok")
    print(f"machine: {machine()}")
    first = None
    for minutes in args.minutes:
        path = root / f"long{minutes:g}.flac"
        write_long_flac(path, minutes, clip)
        read_rss, read_s, samples = run(READ, str(path))
        tok_rss, tok_s = run(TOKENIZE, str(path), "-t", str(root / "tok"), "-o", str(root / f"out{minutes:g}"))
        first = first or (read_rss, tok_rss)
        print(f"{minutes:5g} min 44.1 kHz stereo FLAC ({path.stat().st_size / 2**20:.0f} MiB): "
              f"read {read_rss / 1024:6.0f} MiB ({read_rss / first[0]:.2f}x) {read_s:5.1f} s, {samples / 16000:.0f} s at 16 kHz; "
              f"tokenize {tok_rss / 1024:6.0f} MiB ({tok_rss / first[1]:.2f}x) {tok_s:5.1f} s")
        path.unlink()


if __name__ == "__main__":
    main()
