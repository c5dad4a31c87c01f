"""Start-up of one rank of a corpus job on manifests of 10k, 100k and 1M entries.

What every rank does before its first file: import speechtok, read the whole manifest (a fairseq
.tsv, LibriSpeech-like paths), check the ids are unique, digest the input list for `job.json`,
claim OUT and list the shards still to do (`ParquetShards.pending`, rank 3 of 8). Each size runs
in a fresh process; reported: wall time from interpreter start and peak RSS (ru_maxrss). Target
(issue 15): linear; 1M entries under 15 s and 1 GB.

    python benchmarks/manifest_scale.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from common import machine

RANK = """
import time
start = time.perf_counter()
import resource, sys
import pyarrow as pa
from speechtok.corpus import collect
from speechtok.corpus.inputs import shard_range
from speechtok.corpus.runner import JobResult
from speechtok.corpus.sinks import ParquetShards, job_signature
utterances = collect([sys.argv[1]])
signature = job_signature({"command": "tokenize"}, utterances, 8, 1000)
sink = ParquetShards(sys.argv[2], signature, [pa.field("x", pa.int16())], rank=3, nshard=8)
todo = sink.pending(shard_range(len(utterances), 3, 8), JobResult())
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(todo))
"""


def write_tsv(path: Path, entries: int) -> None:
    with open(path, "w") as f:
        f.write("/data/LibriSpeech\n")
        for i in range(entries):
            speaker, chapter = i // 10000, i // 100
            f.write(f"train-clean-100/{speaker}/{chapter}/{speaker}-{chapter}-{i:06d}.flac\t{16000 + i % 250000}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    print(f"machine: {machine()}")
    base = None
    for size in args.sizes:
        tsv = root / f"train{size}.tsv"
        write_tsv(tsv, size)
        out = subprocess.run([sys.executable, "-c", RANK, str(tsv), str(root / f"out{size}")], capture_output=True,
                             text=True, check=True).stdout.split()
        seconds, rss, shards = float(out[0]), int(out[1]) / 1024, int(out[2])
        base = base or (seconds, rss)
        print(f"{size:>9,} entries: start-up {seconds:5.2f} s, peak RSS {rss:6.0f} MiB "
              f"({shards} shards for rank 3 of 8)")


if __name__ == "__main__":
    main()
