"""Corpus throughput: `speechtok tokenize` vs a batch-1 loop of the reference method, same files.

The reference is what fairseq's `dump_hubert_feature.py` + `dump_km_label.py` (and a hand loop over
SpeechBrain's DiscreteSSL) do per file: read it, layer-norm the waveform, run the whole model with
all hidden states, take layer L, sklearn `predict`. speechtok runs the corpus job in-process
(reader threads, length-bucketed batches, truncated model, torch assignment, Parquet shards) with
its defaults for the device. Timed rounds alternate the two methods. Both use the
same random WavLM-large-shaped model and the same k-means; tokens are compared file by file.

    python benchmarks/corpus.py            # WavLM-large shape, layer 7, 24 files of 2-12 s
    python benchmarks/corpus.py --quick    # a small model, for a smoke test
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import joblib
import numpy as np
import pyarrow.parquet as pq
import soundfile as sf
import torch
import torch.nn.functional as F
from common import interleaved_median_times, machine, speech, wavlm_model
from sklearn.cluster import MiniBatchKMeans
from transformers import AutoModel

import speechtok
from speechtok.corpus import collect
from speechtok.corpus.tokenize import tokenize_corpus


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layer", type=int, default=7)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (each runs both methods), after a warm-up")
    parser.add_argument("--quick", action="store_true", help="12 blocks of 256 dims instead of WavLM-large")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp())
    config = wavlm_model(tmp / "model", args.quick)
    layer = args.layer

    # files of 2-12 s, as in LibriSpeech-like corpora
    rng = np.random.default_rng(0)
    clips = speech(12.0, args.files)
    files = []
    for i, clip in enumerate(clips):
        path = tmp / "audio" / f"utt{i:03d}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, clip[: int(rng.uniform(2, 12) * 16000)], 16000)
        files.append(path)
    audio_seconds = sum(sf.info(f).duration for f in files)

    full = AutoModel.from_pretrained(tmp / "model").eval()

    def hidden(path):
        wave = torch.from_numpy(sf.read(path, dtype="float32")[0])
        with torch.inference_mode():
            return full(F.layer_norm(wave, wave.shape)[None], output_hidden_states=True).hidden_states[layer][0]

    km = MiniBatchKMeans(n_clusters=1000, n_init=1, batch_size=10000, random_state=0)
    km.fit(torch.cat([hidden(f) for f in files[:8]]).numpy())
    joblib.dump(km, tmp / "km.bin")

    encoder = speechtok.SSLEncoder.from_pretrained(str(tmp / "model"), layers=[layer])
    tok = speechtok.Tokenizer(encoder, {f"L{layer}": speechtok.KMeans.load(tmp / "km.bin")})
    utterances = collect([tmp / "audio"])
    runs = iter(range(1000))

    def ours():  # a fresh output directory each time: a finished one would be skipped
        out = tmp / f"out{next(runs)}"
        return out, tokenize_corpus(utterances, tok, out)

    times, results = interleaved_median_times(
        {"reference": lambda: {f.stem: km.predict(hidden(f).numpy()) for f in files}, "speechtok": ours},
        args.repeats)
    ref_time, ours_time = times["reference"], times["speechtok"]
    reference, (out, result) = results["reference"], results["speechtok"]
    rows = pq.read_table(out / "data").to_pylist()

    same = total = 0
    for row in rows:
        ref = reference[row["id"]]
        same += int((np.asarray(row[f"L{layer}"]) == ref).sum())
        total += len(ref)
    print(f"machine: {machine()}")
    print(f"model: WavLM {config.num_hidden_layers} blocks x {config.hidden_size}, layer {layer}, K=1000; "
          f"{len(files)} files, {audio_seconds:.1f} s of audio; {result.ok} rows")
    print(f"reference (batch 1: read, full forward, sklearn predict): {ref_time:.2f} s, {audio_seconds / ref_time:.2f}x realtime")
    print(f"speechtok tokenize (corpus job, Parquet out):             {ours_time:.2f} s, "
          f"{audio_seconds / ours_time:.2f}x realtime")
    print(f"throughput ratio: {ref_time / ours_time:.2f}x; tokens identical: {same / total * 100:.2f}% of {total} frames")


if __name__ == "__main__":
    main()
