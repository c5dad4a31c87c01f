"""A resumable corpus job: utterances in, Parquet shards out, nothing lost or written twice.

The job's utterances (this rank's share) are cut into shards of `shard_size` in input order. A
shard is written to `<name>.tmp` and renamed when complete, so a shard file that exists is whole;
re-running the same job skips those and redoes the rest, giving exactly the uninterrupted output.
A job directory remembers what made it (`job.json`); a different job into it is refused.

Bad utterances do not stop the job (unless `strict`): each is recorded with its reason, per shard
(committed with the shard) and merged into `errors.jsonl` at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from .arrow import list_column
from .inputs import Utterance, shard_range
from .memory import limit_heap_fragmentation
from .reader import AudioReader, Loaded, read_ahead, windows

DEFAULT_SHARD_SIZE = 1000  # utterances per Parquet file (a few hours of speech)
JOB_FILE = "job.json"
DATA_DIR = "data"  # only Parquet in here, so `pd.read_parquet(OUT/data)` reads it all
STATE_DIR = ".state"  # per-shard error lists, committed before their shard


class JobMismatch(RuntimeError):
    """OUT holds the output of a different job."""


class UtteranceFailed(RuntimeError):
    """A bad utterance under `strict`."""


@dataclass
class JobResult:
    ok: int = 0
    failed: int = 0
    skipped_shards: int = 0
    samples: int = 0  # audio encoded in this run
    seconds: float = 0.0  # wall time of this run
    errors: list[dict] = field(default_factory=list)  # all of the rank's, this run and earlier
    shards: list[str] = field(default_factory=list)
    bytes: int = 0


# Columns every row has, ahead of the job's own.
BASE_FIELDS = [
    pa.field("id", pa.string()),
    pa.field("path", pa.string()),
    pa.field("start", pa.float64()),  # seconds, for segments of a longer file; else null
    pa.field("duration", pa.float64()),
    pa.field("index", pa.int64()),  # position in the job's inputs (fairseq .tsv order)
    pa.field("num_samples", pa.int64()),  # at the encoder's sample rate
]


def utterance_digest(utterances: Sequence[Utterance]) -> str:
    h = hashlib.sha256()
    for u in utterances:
        h.update(json.dumps([u.id, u.path, u.start, u.duration]).encode())
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def window_samples(batch_seconds: float, sample_rate: int) -> int:
    """Audio gathered before encoding: several batches, so length-bucketing has choice, and at
    least two minutes, so Parquet row groups are not tiny."""
    return int(max(4 * batch_seconds, 120.0) * sample_rate)


def rank_suffix(rank: int, nshard: int) -> str:
    return "" if nshard == 1 else f"-{rank}-of-{nshard}"


class ShardedJob:
    """Runs `process` over a corpus into `out`, shard by shard.

    `process(waves) -> [dict of columns]` gives the job's own columns for each prepared wave of a
    window, as numpy arrays; `fields` declares them (list types) for the Parquet schema.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        utterances: Sequence[Utterance],
        signature: dict,
        fields: list[pa.Field],
        *,
        rank: int = 0,
        nshard: int = 1,
        shard_size: int = DEFAULT_SHARD_SIZE,
        strict: bool = False,
        metadata: dict | None = None,
    ):
        if shard_size < 1:
            raise ValueError("shard_size must be at least 1")
        self.out = Path(out)
        self.utterances = list(utterances)
        self.rank, self.nshard, self.shard_size, self.strict = rank, nshard, shard_size, strict
        self.mine = shard_range(len(self.utterances), rank, nshard)
        self.signature = {**signature, "utterances": len(self.utterances),
                          "utterance_digest": utterance_digest(self.utterances),
                          "nshard": nshard, "shard_size": shard_size}
        self.schema = pa.schema(BASE_FIELDS + fields)
        self.metadata = metadata or {}

    # --- layout ------------------------------------------------------------------------------
    def shard_name(self, i: int) -> str:
        return f"part-{self.rank:03d}-{i:05d}.parquet"

    def shard_path(self, i: int) -> Path:
        return self.out / DATA_DIR / self.shard_name(i)

    def shards(self) -> list[range]:
        starts = range(self.mine.start, self.mine.stop, self.shard_size)
        return [range(s, min(s + self.shard_size, self.mine.stop)) for s in starts]

    def _claim(self) -> None:
        """Create OUT or check it holds this same job; drop what a killed run left half-written."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / STATE_DIR).mkdir(exist_ok=True)
        (self.out / DATA_DIR).mkdir(exist_ok=True)
        job_file = self.out / JOB_FILE
        if job_file.exists():
            previous = json.loads(job_file.read_text())
            if previous != self.signature:
                changed = sorted(k for k in set(previous) | set(self.signature) if previous.get(k) != self.signature.get(k))
                raise JobMismatch(
                    f"{self.out} holds the output of a different job (differs in: {', '.join(changed)}). "
                    "Re-run with the same arguments to resume it, or choose another output directory."
                )
        else:
            atomic_write_text(job_file, json.dumps(self.signature, indent=2) + "\n")
        for folder in (DATA_DIR, STATE_DIR):
            for stale in (self.out / folder).glob(f"part-{self.rank:03d}-*.tmp"):
                stale.unlink()

    # --- running -----------------------------------------------------------------------------
    def run(
        self,
        reader: AudioReader,
        process: Callable[[list[np.ndarray]], list[dict]],
        *,
        window_samples: int,
        workers: int = 4,
        on_start: Callable[[int, int], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> JobResult:
        """`on_start(total_files, files_already_done)`; `on_progress(files, samples)` per window."""
        limit_heap_fragmentation()
        self._claim()
        result = JobResult()
        started = time.perf_counter()
        shards = self.shards()
        todo = [(i, s) for i, s in enumerate(shards) if not self.shard_path(i).exists()]
        result.skipped_shards = len(shards) - len(todo)
        if on_start:
            on_start(len(self.mine), len(self.mine) - sum(len(s) for _, s in todo))
        work = ((j, self.utterances[j]) for _, s in todo for j in s)
        loaded = read_ahead(work, reader, workers=workers, prefetch=max(16, 4 * workers))
        try:
            for i, span in todo:
                self._write_shard(i, islice(loaded, len(span)), process, window_samples, result, on_progress)
        finally:
            loaded.close()  # stop the readers if a shard failed
        result.seconds = time.perf_counter() - started
        self._finish(shards, result)
        return result

    def _write_shard(self, i: int, items: Iterator[Loaded], process, window_samples, result, on_progress) -> None:
        name = self.shard_name(i)
        tmp = self.shard_path(i).with_name(name + ".tmp")
        errors = []
        with pq.ParquetWriter(tmp, self.schema, compression="zstd") as writer:
            for window in windows(items, window_samples):
                good = [item for item in window if item.wave is not None]
                for item in window:
                    if item.wave is None:
                        record = {"id": item.utterance.id, "path": item.utterance.path,
                                  "start": item.utterance.start, "duration": item.utterance.duration,
                                  "reason": item.error}
                        if self.strict:
                            raise UtteranceFailed(f"{item.utterance.describe()}: {item.error}")
                        errors.append(record)
                rows = process([item.wave for item in good]) if good else []
                if rows:
                    writer.write_table(self._table(good, rows))
                result.ok += len(good)
                result.failed += len(window) - len(good)
                samples = sum(len(item.wave) for item in good)
                result.samples += samples
                if on_progress:
                    on_progress(len(window), samples)
        # The error list is committed first: a shard file that exists always has its errors beside it.
        error_file = self.out / STATE_DIR / (name + ".errors.jsonl")
        atomic_write_text(error_file, "".join(json.dumps(e) + "\n" for e in errors))
        os.replace(tmp, self.shard_path(i))

    def _table(self, items: list[Loaded], rows: list[dict]) -> pa.Table:
        columns = {
            "id": [it.utterance.id for it in items],
            "path": [it.utterance.path for it in items],
            "start": [it.utterance.start for it in items],
            "duration": [it.utterance.duration for it in items],
            "index": [it.index for it in items],
            "num_samples": [len(it.wave) for it in items],
        }
        arrays = [pa.array(columns[f.name], f.type) if f.name in columns
                  else list_column([row[f.name] for row in rows], f.type) for f in self.schema]
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _finish(self, shards: list[range], result: JobResult) -> None:
        suffix = rank_suffix(self.rank, self.nshard)
        summary = []
        for i, span in enumerate(shards):
            name = self.shard_name(i)
            errors_text = (self.out / STATE_DIR / (name + ".errors.jsonl")).read_text()
            shard_errors = [json.loads(line) for line in errors_text.splitlines() if line]
            result.errors += shard_errors
            rows = pq.ParquetFile(self.shard_path(i)).metadata.num_rows
            result.bytes += self.shard_path(i).stat().st_size
            summary.append({"file": f"{DATA_DIR}/{name}", "rows": rows, "errors": len(shard_errors),
                            "first_index": span.start, "stop_index": span.stop})
            result.shards.append(f"{DATA_DIR}/{name}")
        atomic_write_text(self.out / f"errors{suffix}.jsonl", "".join(json.dumps(e) + "\n" for e in result.errors))
        manifest = {
            "speechtok_version": __version__,
            "command": sys.argv,
            **self.metadata,
            "job": self.signature,
            "rank": self.rank,
            "rows": sum(s["rows"] for s in summary),
            "errors": len(result.errors),
            "schema": {f.name: str(f.type) for f in self.schema},
            "shards": summary,
        }
        atomic_write_text(self.out / f"manifest{suffix}.json", json.dumps(manifest, indent=2) + "\n")
