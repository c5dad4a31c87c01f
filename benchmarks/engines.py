"""The local engine vs the Ray engine on this machine: `tokenize` of the same corpus, same output.

Ray runs on this machine (all its cores), started once before the timed rounds (its start-up is
reported apart: on a cluster it is paid once, not per job). Each round runs both engines into
fresh output directories; the shards they write must be byte-identical.

    python benchmarks/engines.py            # WavLM 12 x 256 (random), layer 6, K=100, 120 files of 2-12 s
    python benchmarks/engines.py --files 40 --repeats 1   # a smoke test
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from common import interleaved_median_times, machine, speech, wavlm_model

import speechtok
from speechtok.corpus import collect
from speechtok.corpus.ray_engine import RayEngine
from speechtok.corpus.tokenize import tokenize_corpus


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=120)
    parser.add_argument("--shard-size", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds (each runs both engines), after a warm-up")
    args = parser.parse_args()

    import ray

    tmp = Path(tempfile.mkdtemp())
    wavlm_model(tmp / "model", quick=True)
    rng = np.random.default_rng(0)
    files = []
    for i, clip in enumerate(speech(12.0, args.files)):
        path = tmp / "audio" / f"utt{i:03d}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, clip[: int(rng.uniform(2, 12) * 16000)], 16000)
        files.append(path)
    audio_seconds = sum(sf.info(f).duration for f in files)

    encoder = speechtok.SSLEncoder.from_pretrained(str(tmp / "model"), layers=[6])
    frames = torch.cat([f["L6"] for f in encoder.encode_batch(files[:8])])
    speechtok.Tokenizer(encoder, {"L6": speechtok.KMeans.fit(frames, 100, seed=0)}).save_pretrained(tmp / "tok")
    tok = speechtok.load(tmp / "tok")  # through load: the Ray workers load it again from its LoadArgs
    utterances = collect([tmp / "audio"])

    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    ray_start = time.perf_counter() - started
    runs = iter(range(1000))

    def job(engine):
        out = tmp / f"out{next(runs)}"  # fresh each time: a finished output would be skipped
        tokenize_corpus(utterances, tok, out, shard_size=args.shard_size, engine=engine)
        return out

    times, outs = interleaved_median_times({"local": lambda: job(None), "ray": lambda: job(RayEngine(device="cpu"))},
                                           args.repeats)
    ray.shutdown()
    shards = sorted(p.name for p in (outs["local"] / "data").iterdir())
    same = shards == sorted(p.name for p in (outs["ray"] / "data").iterdir()) and all(
        (outs["local"] / "data" / n).read_bytes() == (outs["ray"] / "data" / n).read_bytes() for n in shards)

    print(f"machine: {machine()}")
    print(f"corpus: {len(files)} files, {audio_seconds:.1f} s of audio, {len(shards)} shards of {args.shard_size}; "
          f"WavLM 12 x 256 (random), layer 6, K=100; median of {args.repeats} rounds")
    print(f"Ray start-up (ray.init, {os.cpu_count()} CPUs; not in the times below): {ray_start:.1f} s")
    for name in ("local", "ray"):
        print(f"{name:>5} engine: {times[name]:6.2f} s, {audio_seconds / times[name]:6.1f}x realtime")
    print(f"ray / local throughput: {times['local'] / times['ray']:.2f}x; shards byte-identical: {same}")


if __name__ == "__main__":
    main()
