"""Where a corpus job's rows go (see `runner.Sink`).

- `ParquetShards`: `OUT/data/part-R-N.parquet`, one row per utterance, resumable. A shard is
  written to `<name>.tmp` and renamed when complete; its error list and its record (rows, bytes,
  sha256) are committed just before, so a shard file that exists was whole when it was written. A
  re-run checks every finished shard against its record (size, then sha256: one read of the
  shards, no decoding), redoes a damaged or truncated one and says so, and redoes exactly the
  shards without a file. `job.json` remembers what made OUT, and a different job into it is
  refused. At the end: `errors.jsonl` and `manifest.json` (a `CorpusManifest`), per rank.
- `FairseqArrays`: `dump_hubert_feature.py`'s layout, per stream `{split}_{rank}_{nshard}.npy`
  (every frame, concatenated) + `.len`; written under temporary names and renamed at the end.
- `FrameReservoirs`: a fixed-size uniform sample of frames per stream (for fitting k-means).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..audio import readable
from ..errors import InputError, JobFailed
from ..version import __version__
from .arrow import list_column
from .inputs import Utterance
from .lock import LOCK_FILE, hold
from .manifest import DATA_DIR, CorpusManifest, ShardRecord
from .reader import Loaded
from .remote import is_url
from .runner import JobResult, Work, error_record
from .store import atomic_write_text, claim_record, file_digest, open_store

DEFAULT_SHARD_SIZE = 1000  # utterances per Parquet file (a few hours of speech)
JOB_FILE = "job.json"
STATE_DIR = ".state"  # per-shard error lists, committed before their shard

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
    """sha256 over `json.dumps([id, path, start, duration(, member)])` of every utterance."""
    h = hashlib.sha256()
    for u in utterances:
        if u.member:  # a member is added only where there is one, so digests of plain files stay what they were
            h.update(json.dumps([u.id, u.path, u.start, u.duration, list(u.member)]).encode())
        else:
            h.update(f"[{_json(u.id)}, {_json(u.path)}, {_json(u.start)}, {_json(u.duration)}]".encode())
    return h.hexdigest()


def _json(value) -> str:
    """`json.dumps(value)` of a string, float or None, by hand where that is plain (json.dumps per
    entry was half of digesting a 1M-line manifest)."""
    if value is None:
        return "null"
    if isinstance(value, str) and value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    if type(value) is float and math.isfinite(value):
        return repr(value)
    return json.dumps(value)


def rank_suffix(rank: int, nshard: int) -> str:
    return "" if nshard == 1 else f"-{rank}-of-{nshard}"


def job_signature(signature: dict, utterances: Sequence[Utterance], nshard: int = 1,
                  shard_size: int | None = None) -> dict:
    """A job's signature completed with what its inputs and split are."""
    return {**signature, "utterances": len(utterances), "utterance_digest": utterance_digest(utterances),
            "nshard": nshard, **({} if shard_size is None else {"shard_size": shard_size})}


class ParquetShards:
    """Parquet shards of `shard_size` utterances under `out/data`, resumable (module docstring).
    `out` is a local directory or an object store URL (`store.open_store`)."""

    needs_every_input = False

    def __init__(self, out: str | os.PathLike, signature: dict, fields: list[pa.Field], *, rank: int = 0,
                 nshard: int = 1, shard_size: int = DEFAULT_SHARD_SIZE, metadata: dict | None = None):
        if shard_size < 1:
            raise InputError("shard_size must be at least 1")
        self.out = out
        self.store = open_store(out)
        self.signature = signature
        self.rank, self.nshard, self.shard_size = rank, nshard, shard_size
        self.schema = pa.schema(BASE_FIELDS + fields)
        self.metadata = metadata or {}
        self.lock_name = LOCK_FILE + rank_suffix(rank, nshard)
        self._all: list[Work] = []
        self._writer: pq.ParquetWriter | None = None
        self._errors: list[dict] = []
        self._rows = 0

    def shard_name(self, i: int) -> str:
        return f"part-{self.rank:03d}-{i:05d}.parquet"

    @staticmethod
    def _shard(name: str) -> str:
        return f"{DATA_DIR}/{name}"

    @staticmethod
    def _record(name: str) -> str:
        return f"{STATE_DIR}/{name}.json"

    @staticmethod
    def _shard_errors(name: str) -> str:
        return f"{STATE_DIR}/{name}.errors.jsonl"

    def _claim(self) -> None:
        """Create OUT or check it holds this same job; drop what a killed run left half-written."""
        self.store.makedirs(STATE_DIR, DATA_DIR)
        with hold(self.out, ".job.lock", wait=True):  # one job.json check at a time
            claim_record(self.store, JOB_FILE, self.signature, "job")
        for folder in (DATA_DIR, STATE_DIR):
            for stale in self.store.glob(f"{folder}/part-{self.rank:03d}-*.tmp"):
                self.store.remove(stale)

    def pending(self, indices: range, result: JobResult) -> list[Work]:
        self._claim()
        starts = range(indices.start, indices.stop, self.shard_size)
        self._all = [Work(self.shard_name(i), range(s, min(s + self.shard_size, indices.stop)))
                     for i, s in enumerate(starts)]
        finished = set(self.store.glob(f"{DATA_DIR}/part-{self.rank:03d}-*.parquet"))  # one listing, not one per shard
        todo = []
        for work in self._all:
            if self._shard(work.name) in finished:
                damage = self._damage(work.name)
                if damage is None:
                    continue
                self.store.remove(self._shard(work.name))  # damaged: redone below, like a shard never written
                result.redone.append(f"{work.name} ({damage})")
            todo.append(work)
        result.skipped_shards = len(self._all) - len(todo)
        return todo

    def _damage(self, name: str) -> str | None:
        """Why a finished shard is not what was committed, or None if it is."""
        shard, record_name = self._shard(name), self._record(name)
        if not self.store.exists(record_name):  # written before shards had records: the footer must read
            try:
                with self.store.open(shard) as f:
                    pq.read_metadata(f)
            except (OSError, pa.ArrowException):
                return "unreadable"
            return None
        try:
            record = json.loads(self.store.read_text(record_name))
            recorded_bytes, recorded_sha256 = int(record["bytes"]), str(record["sha256"])
        except (ValueError, KeyError, TypeError):
            return f"its record {name}.json is damaged"
        size = self.store.size(shard)
        if size != recorded_bytes:
            return f"{size} bytes, {recorded_bytes} were written"
        sha256 = self.store.sha256(shard)
        if sha256 is not None and sha256 != recorded_sha256:
            return "its sha256 differs from the one recorded when it was written"
        return None

    def begin(self, work: Work) -> None:
        self._writer = pq.ParquetWriter(self.store.staged(self._shard(work.name)), self.schema, compression="zstd")
        self._errors = []
        self._rows = 0

    def failed(self, items: list[Loaded]) -> None:
        self._errors += [error_record(item) for item in items]

    def write(self, items: list[Loaded], rows: list[dict]) -> None:
        columns = {
            "id": [it.utterance.id for it in items],
            "path": [readable(it.utterance.locator) for it in items],
            "start": [it.utterance.start for it in items],
            "duration": [it.utterance.duration for it in items],
            "index": [it.index for it in items],
            "num_samples": [it.num_samples for it in items],
        }
        arrays = [pa.array(columns[f.name], f.type) if f.name in columns
                  else list_column([row[f.name] for row in rows], f.type) for f in self.schema]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self._rows += len(items)

    def commit(self, work: Work) -> None:
        self._writer.close()
        self._writer = None
        shard = self._shard(work.name)
        size, sha256 = file_digest(self.store.staged(shard))
        # The error list and the record are committed first: a shard file that exists always has
        # both beside it.
        self.store.write_text(self._shard_errors(work.name), "".join(json.dumps(e) + "\n" for e in self._errors))
        self.store.write_text(self._record(work.name), json.dumps({"rows": self._rows, "bytes": size,
                                                                    "sha256": sha256}) + "\n")
        self.store.publish(shard)

    def abort(self) -> None:
        """The unfinished shard's staged file stays until the next run removes it (object stores:
        the staging directory goes, nothing was uploaded)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the error that stopped the job is the one to report
                pass
        self.store.close()

    def finish(self, result: JobResult) -> None:
        suffix = rank_suffix(self.rank, self.nshard)
        records = []
        for work in self._all:
            shard = self._shard(work.name)
            errors_text = self.store.read_text(self._shard_errors(work.name))
            shard_errors = [json.loads(line) for line in errors_text.splitlines() if line]
            result.errors += shard_errors
            if self.store.exists(self._record(work.name)):
                record = json.loads(self.store.read_text(self._record(work.name)))
                rows, size, sha256 = record["rows"], record["bytes"], record["sha256"]
            else:  # a shard committed before shards had records
                try:
                    with self.store.open(shard) as f:
                        rows = pq.ParquetFile(f).metadata.num_rows
                except (OSError, pa.ArrowException) as error:
                    raise JobFailed(f"{self.store.location(shard)}: a damaged shard ({error}); delete it and run "
                                    "the command again") from None
                size, sha256 = self.store.size(shard), None
            result.bytes += size
            records.append(ShardRecord(shard, rows, len(shard_errors), work.indices.start,
                                       work.indices.stop, size, sha256))
            result.shards.append(shard)
        self.store.write_text(f"errors{suffix}.jsonl", "".join(json.dumps(e) + "\n" for e in result.errors))
        manifest = CorpusManifest(
            speechtok_version=__version__, command=list(sys.argv), job=self.signature, rank=self.rank,
            rows=sum(r.rows for r in records), errors=len(result.errors),
            schema={f.name: str(f.type) for f in self.schema}, shards=records, **self.metadata)
        self.store.write_text(f"manifest{suffix}.json", json.dumps(manifest.to_dict(), indent=2) + "\n")
        self.store.close()


class NpyAppender:
    """A float32 [rows, dim] .npy written row block by row block; the header is fixed at the end.

    The header is padded to a fixed 128 bytes (valid in format 1.0: spaces before the newline), so
    the final shape can be written over it without moving the data.
    """

    HEADER = 128

    def __init__(self, path: Path, dim: int):
        self.path, self.dim, self.rows = path, dim, 0
        self.file = open(path, "wb")
        self.file.write(b"\0" * self.HEADER)

    def append(self, block: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
        self.rows += len(block)

    def close(self) -> None:
        text = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (self.rows, self.dim)
        body = text.ljust(self.HEADER - 10 - 1) + "\n"
        header = b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")
        assert len(header) == self.HEADER
        self.file.seek(0)
        self.file.write(header)
        self.file.close()


class FairseqArrays:
    """`{out}/{stream}/{split}_{rank}_{nshard}.npy` + `.len` per stream (fairseq's feature dump).
    One file per rank: every input line must have its frames, so a bad input stops the job."""

    needs_every_input = True

    def __init__(self, out: str | os.PathLike, split: str, dims: dict[str, int], rank: int = 0, nshard: int = 1):
        if is_url(os.fspath(out)):
            raise InputError(f"{out}: fairseq's feature files are written to a local directory (their .npy grows "
                             "in place); use --format parquet for an object store")
        self.out, self.dims = Path(out), dims
        self.stem = f"{split}_{rank}_{nshard}"
        self.lock_name = f"{LOCK_FILE}-{self.stem}"
        self.final = {s: self.out / s / f"{self.stem}.npy" for s in dims}
        self._arrays: dict[str, NpyAppender] = {}
        self._lengths: dict[str, list[int]] = {}

    def pending(self, indices: range, result: JobResult) -> list[Work]:
        return [Work(self.stem, indices)]

    def begin(self, work: Work) -> None:
        for s, dim in self.dims.items():
            self.final[s].parent.mkdir(parents=True, exist_ok=True)
            self._arrays[s] = NpyAppender(self.final[s].with_name(self.stem + ".npy.tmp"), dim)
            self._lengths[s] = []

    def failed(self, items: list[Loaded]) -> None:  # never called: needs_every_input
        raise AssertionError("FairseqArrays needs every input")

    def write(self, items: list[Loaded], rows: list[dict]) -> None:
        for row in rows:
            for s in self.dims:
                self._arrays[s].append(row[s])
                self._lengths[s].append(len(row[s]))

    def commit(self, work: Work) -> None:
        for s, array in self._arrays.items():
            array.close()
            os.replace(array.path, self.final[s])
            atomic_write_text(self.final[s].with_name(self.stem + ".len"),
                              "".join(f"{n}\n" for n in self._lengths[s]))
        self._arrays = {}

    def abort(self) -> None:
        for array in self._arrays.values():
            array.file.close()
            array.path.unlink(missing_ok=True)
        self._arrays = {}

    def finish(self, result: JobResult) -> None:
        result.shards = [str(p) for p in self.final.values()]


class Reservoir:
    """A uniform sample of at most `capacity` frames that does not depend on the order utterances
    arrive in (so engines that finish work in any order, and any batching, sample the same frames):
    every frame gets a random key from (seed, its utterance's index, its position), and the sample
    is the `capacity` frames with the smallest keys (a bottom-k sample), ordered by key.

    Memory: a buffer of `capacity` plus 1/8 rows. Once full it is cut back to the `capacity`
    smallest keys in place (only the kept rows beyond `capacity` move), and a frame whose key is
    above the largest kept one is never stored."""

    SLACK = 8  # the buffer holds capacity + capacity / SLACK rows between cuts

    def __init__(self, capacity: int, seed: int = 0):
        self.capacity, self.seed = capacity, seed
        self.seen = 0
        self.rows: np.ndarray | None = None
        self.keys = np.empty(capacity + max(1, capacity // self.SLACK), dtype=np.float64)
        self.filled = 0
        self.threshold = np.inf  # keys at or above it can no longer be in the sample

    def add(self, block: np.ndarray, index: int) -> None:
        """The frames of the utterance at `index` (its position in the job's input list)."""
        keys = np.random.default_rng((self.seed, index)).random(len(block))
        self.seen += len(block)
        wanted = np.flatnonzero(keys < self.threshold)
        if self.rows is None and len(block):
            self.rows = np.empty((len(self.keys), block.shape[1]), dtype=np.float32)
        while len(wanted):
            room = min(len(self.keys) - self.filled, len(wanted))
            take, wanted = wanted[:room], wanted[room:]
            self.rows[self.filled : self.filled + room] = block[take]
            self.keys[self.filled : self.filled + room] = keys[take]
            self.filled += room
            if self.filled == len(self.keys):
                self._cut()
                wanted = wanted[keys[wanted] < self.threshold]

    def _cut(self) -> None:
        """Keep the `capacity` smallest keys in the first `capacity` slots."""
        if self.filled <= self.capacity:
            return
        kept = np.zeros(self.filled, dtype=bool)
        kept[np.argpartition(self.keys[: self.filled], self.capacity - 1)[: self.capacity]] = True
        holes = np.flatnonzero(~kept[: self.capacity])
        movers = self.capacity + np.flatnonzero(kept[self.capacity :])
        self.rows[holes], self.keys[holes] = self.rows[movers], self.keys[movers]
        self.filled = self.capacity
        self.threshold = float(self.keys[: self.capacity].max())

    def sample(self) -> np.ndarray:
        if self.rows is None:
            return np.zeros((0, 0), np.float32)
        self._cut()
        return self.rows[np.argsort(self.keys[: self.filled], kind="stable")]


FRAME_WORK_SIZE = 256  # inputs per work of a sampling pass (the Ray engine holds a work's features until done)


class FrameReservoirs:
    """A `Reservoir` of frames per stream; failed inputs are listed in `errors`. The sample does not
    depend on batching or on the order works finish; works are `work_size` inputs (with the Ray
    engine, the driver holds the features of a work until it is complete)."""

    needs_every_input = False

    out = None  # nothing is written while sampling (the tokenizer is written after the fit)
    lock_name = LOCK_FILE

    def __init__(self, streams: Sequence[str], capacity: int, seed: int = 0, work_size: int | None = None):
        self.reservoirs = {s: Reservoir(capacity, seed + i) for i, s in enumerate(streams)}
        self.work_size = work_size or FRAME_WORK_SIZE
        self.errors: list[tuple[int, dict]] = []

    def pending(self, indices: range, result: JobResult) -> list[Work]:
        return [Work(f"frames-{n:06d}", indices[i : i + self.work_size])
                for n, i in enumerate(range(0, len(indices), self.work_size))]

    def begin(self, work: Work) -> None:
        pass

    def failed(self, items: list[Loaded]) -> None:
        self.errors += [(item.index, error_record(item)) for item in items]

    def write(self, items: list[Loaded], rows: list[dict]) -> None:
        for item, row in zip(items, rows):
            for stream, block in row.items():
                self.reservoirs[stream].add(block, item.index)

    def commit(self, work: Work) -> None:
        pass

    def abort(self) -> None:
        pass

    def finish(self, result: JobResult) -> None:
        result.errors = [record for _, record in sorted(self.errors, key=lambda e: e[0])]
