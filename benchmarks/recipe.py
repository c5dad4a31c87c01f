"""HuBERT iteration-1 targets end to end: `speechtok hubert-labels --encoder mfcc -k 100` against
fairseq's three simple_kmeans scripts written out by the book, on the same generated speech.

The corpus is phone-like segments with known boundaries (8 "phones": vowel-like partials,
fricative noise, near-silence; 60-200 ms each), so both label sets get a PNMI against the true
phones at 100 Hz. fairseq's side, each step as its script does it, in one process run with
`python -c` (its imports counted, as speechtok's start-up is):

1. dump_mfcc_feature.py: per file, Kaldi MFCC with torchaudio's `compliance.kaldi.mfcc` defaults
   (computed here by `speechtok.encoders.mfcc.KaldiMfcc`, the same float32 torch definition, since
   torchaudio cannot be installed here) + `compute_deltas` twice; all frames to `.npy` + `.len`;
2. learn_kmeans.py: every frame loaded, scikit-learn `MiniBatchKMeans(n_clusters=100,
   init="k-means++", max_iter=100, batch_size=10000, tol=0.0, max_no_improvement=100, n_init=20,
   reassignment_ratio=0.0, compute_labels=False, init_size=None)`, saved with joblib;
3. dump_km_label.py: `ApplyKmeans` (|x|^2 - 2 x C + |C|^2, argmin) per utterance -> `.km`.

    python benchmarks/recipe.py                 # 240 files, ~22 min of speech
    python benchmarks/recipe.py --files 60      # quicker
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from common import machine

from speechtok.eval.metrics import JointCounts, teacher_quality
from speechtok.example_audio import frame_phones, timed_utterance

SR = 16000

FAIRSEQ = r'''
import sys, time, numpy as np, soundfile as sf, torch, joblib
from pathlib import Path
from sklearn.cluster import MiniBatchKMeans
from speechtok.encoders.mfcc import KaldiMfcc, deltas
tsv, work = Path(sys.argv[1]), Path(sys.argv[2])
lines = tsv.read_text().splitlines()
root, entries = Path(lines[0]), [l.split("\t")[0] for l in lines[1:] if l.strip()]
# 1. dump_mfcc_feature.py
mfcc = KaldiMfcc(16000)
feats, lengths = [], []
with torch.no_grad():
    for rel in entries:
        wav, sr = sf.read(root / rel, dtype="float32")
        c = mfcc(wav)
        d = deltas(c)
        f = torch.cat([c, d, deltas(d)], dim=1).numpy()
        feats.append(f)
        lengths.append(len(f))
np.save(work / "train_0_1.npy", np.concatenate(feats))
(work / "train_0_1.len").write_text("".join(f"{n}\n" for n in lengths))
# 2. learn_kmeans.py
feat = np.load(work / "train_0_1.npy", mmap_mode="r")
km = MiniBatchKMeans(n_clusters=100, init="k-means++", max_iter=100, batch_size=10000, tol=0.0,
                     max_no_improvement=100, n_init=20, reassignment_ratio=0.0, verbose=0,
                     compute_labels=False, init_size=None)
km.fit(np.asarray(feat))
joblib.dump(km, work / "km.bin")
# 3. dump_km_label.py
km = joblib.load(work / "km.bin")
C = km.cluster_centers_.transpose()
Cnorm = (C ** 2).sum(0, keepdims=True)
offsets = np.cumsum([0] + lengths)
with open(work / "train_0_1.km", "w") as out:
    for i in range(len(lengths)):
        x = np.asarray(feat[offsets[i]:offsets[i + 1]])
        dist = (x ** 2).sum(1, keepdims=True) - 2 * np.matmul(x, C) + Cnorm
        out.write(" ".join(map(str, np.argmin(dist, axis=1))) + "\n")
'''


def write_corpus(root: Path, files: int) -> dict[str, list[str]]:
    """`files` utterances of ~5.5 s; returns the true phone of every 10 ms frame per utterance."""
    rng = np.random.default_rng(0)
    lines, phones = [str(root / "audio")], {}
    (root / "audio").mkdir()
    for u in range(files):
        wave, spans = timed_utterance(rng, seconds=5.5, sample_rate=SR)
        sf.write(root / "audio" / f"u{u:04d}.wav", wave, SR)
        lines.append(f"u{u:04d}.wav\t{len(wave)}")
        phones[f"u{u:04d}"] = frame_phones(spans, len(wave) / SR)
    (root / "train.tsv").write_text("\n".join(lines) + "\n")
    return phones


def pnmi(phones: dict[str, list[str]], km: Path, ids: list[str]) -> float:
    units = [np.array(line.split(), dtype=np.int64) for line in km.read_text().splitlines()]
    return teacher_quality(JointCounts.collect([(phones[i], u) for i, u in zip(ids, units)])).pnmi


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")})
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    phones = write_corpus(root, args.files)
    ids = [f"u{u:04d}" for u in range(args.files)]
    seconds = sum(sf.info(root / "audio" / f"{i}.wav").duration for i in ids)
    times: dict[str, list[float]] = {"fairseq": [], "speechtok": []}
    for r in range(args.rounds):
        work = root / f"fairseq{r}"
        work.mkdir()
        times["fairseq"].append(timed([sys.executable, "-c", FAIRSEQ, str(root / "train.tsv"), str(work)]))
        times["speechtok"].append(timed([sys.executable, "-m", "speechtok.cli", "hubert-labels", "--train",
                                         str(root / "train.tsv"), "-e", "mfcc", "-k", "100", "-o", str(root / f"st{r}"),
                                         "-q"]))
    quality = {"fairseq": pnmi(phones, root / "fairseq0" / "train_0_1.km", ids),
               "speechtok": pnmi(phones, root / "st0" / "train.km", ids)}
    print(f"machine: {machine()}")
    print(f"corpus: {args.files} files, {seconds / 60:.1f} min of generated speech with known phones; "
          f"K=100 MFCC targets; median of {args.rounds} rounds, each a fresh process")
    for name in ("fairseq", "speechtok"):
        print(f"{name:>10}: {np.median(times[name]):6.2f} s   PNMI {quality[name]:.4f}")
    print(f"fairseq / speechtok time: {np.median(times['fairseq']) / np.median(times['speechtok']):.2f}x; "
          f"PNMI difference {quality['speechtok'] - quality['fairseq']:+.4f}")


if __name__ == "__main__":
    main()
