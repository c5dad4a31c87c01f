"""Where a job's output directory lives: a local directory, or a prefix on an object store named by
an fsspec URL (`s3://bucket/corpus`, `gs://...`). The sinks and `TokenizedCorpus` use the same few
operations on both (`open_store` picks the kind).

On an object store:
- A shard is written in a local staging directory, uploaded to `<key>.tmp`, copied to `<key>` and
  the temporary key removed. An object is written whole or not at all, so a final key exists only
  for a whole shard: "done" means "its final key exists". A killed run leaves at most a `.tmp` key,
  which the next run removes.
- Small files (job.json, shard records, error lists, manifests) are single writes: whole or absent.
- A finished shard is checked against its record by size, not sha256: hashing would download every
  shard of the corpus on each resume.
- There are no locks: `lock.hold` holds a local file named after the URL instead.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError, JobFailed
from .remote import file_system, is_url, local_path

CHUNK_BYTES = 1 << 22  # read 4 MiB at a time when hashing a file


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_writer(path) as out:
        out.write(text)


def atomic_write_wave(path: Path, wave, sample_rate: int) -> None:
    """A float32 .wav written under a temporary name and renamed: a .wav that exists is complete."""
    import soundfile as sf

    tmp = path.with_name(path.name + ".tmp")
    sf.write(tmp, wave, sample_rate, format="WAV", subtype="FLOAT")
    os.replace(tmp, path)


@contextmanager
def atomic_writer(path: Path) -> Iterator[TextIO]:
    """A text file written under a temporary name and renamed to `path` when the block ends
    without an error (so `path` is complete or absent); on an error the temporary file is removed."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            yield out
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def file_digest(path: Path) -> tuple[int, str]:
    """(bytes, sha256) of a local file."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


class LocalStore:
    """A local directory. Files are written to `<name>.tmp` beside their final name and renamed."""

    remote = False

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.where = self.root  # what messages and callers call this store

    def __str__(self) -> str:
        return str(self.root)

    def location(self, name: str) -> Path:
        """What other code (and messages) call the file `name` of this store."""
        return self.root / name

    def makedirs(self, *folders: str) -> None:
        for folder in folders:
            (self.root / folder).mkdir(parents=True, exist_ok=True)

    def exists(self, name: str) -> bool:
        return (self.root / name).exists()

    def read_text(self, name: str) -> str:
        return (self.root / name).read_text(encoding="utf-8")

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.root / name, text)

    def remove(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def size(self, name: str) -> int:
        return (self.root / name).stat().st_size

    def sha256(self, name: str) -> str | None:
        return file_digest(self.root / name)[1]

    def glob(self, pattern: str) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.glob(pattern))

    def staged(self, name: str) -> Path:
        """The local file to write `name` into before `publish(name)`."""
        return self.root / (name + ".tmp")

    def publish(self, name: str) -> None:
        os.replace(self.staged(name), self.root / name)

    def open(self, name: str) -> IO[bytes]:
        return open(self.root / name, "rb")

    def is_dir(self) -> bool:
        return self.root.is_dir()

    def read_table(self, location: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
        """A Parquet file of this store, by its `location`."""
        return pq.read_table(location, columns=columns)

    def close(self) -> None:
        pass


class RemoteStore:
    """A prefix on an object store (module docstring)."""

    remote = True

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.fs, self.prefix = file_system(self.url)
        self.prefix = self.prefix.rstrip("/")
        self.where = self.url
        self._staging: Path | None = None

    def __str__(self) -> str:
        return self.url

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def location(self, name: str) -> str:
        return f"{self.url}/{name}"

    def makedirs(self, *folders: str) -> None:
        self.fs.makedirs(self.prefix, exist_ok=True)  # creates the bucket where it does not exist
        self.fs.invalidate_cache()  # listings cached before this run (or by another process) may be stale

    def exists(self, name: str) -> bool:
        return self.fs.exists(self._key(name))

    def read_text(self, name: str) -> str:
        return self.fs.cat_file(self._key(name)).decode("utf-8")

    def write_text(self, name: str, text: str) -> None:
        self.fs.pipe_file(self._key(name), text.encode("utf-8"))

    def remove(self, name: str) -> None:
        if self.fs.exists(self._key(name)):
            self.fs.rm_file(self._key(name))

    def size(self, name: str) -> int:
        return int(self.fs.size(self._key(name)))

    def sha256(self, name: str) -> str | None:
        return None  # not checked on object stores (module docstring)

    def glob(self, pattern: str) -> list[str]:
        # listed and matched here, not by fs.glob: that would read `[`, `*` or `?` in the prefix
        # itself as a pattern
        folder = pattern.rpartition("/")[0]
        try:
            found = self.fs.find(self._key(folder) if folder else self.prefix, maxdepth=1)
        except FileNotFoundError:
            return []
        start = len(self.prefix) + 1
        return sorted(name for name in (p[start:] for p in found) if fnmatch.fnmatchcase(name, pattern))

    def staged(self, name: str) -> Path:
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix="speechtok-staging-"))
        path = self._staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def publish(self, name: str) -> None:
        local, tmp = self.staged(name), self._key(name + ".tmp")
        self.fs.put_file(str(local), tmp)
        self.fs.cp_file(tmp, self._key(name))  # not fs.copy, which expands patterns in the key
        self.fs.rm_file(tmp)
        local.unlink()

    def open(self, name: str) -> IO[bytes]:
        return self.fs.open(self._key(name), "rb")

    def is_dir(self) -> bool:
        return self.fs.isdir(self.prefix)

    def read_table(self, location: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
        # the object's bytes, then Arrow: Arrow's threads never call back into a Python file
        # object (seen once in ~150 runs: an abort at exit, "terminate called without an active
        # exception", after reading through the file object)
        with self.fs.open(os.fspath(location), "rb") as f:
            data = f.read()
        return pq.read_table(pa.BufferReader(data), columns=columns)

    def close(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None


Store = LocalStore | RemoteStore


def differing_keys(earlier: dict, now: dict) -> list[str]:
    """The keys whose values differ between two records (a key one lacks counts)."""
    return sorted(k for k in set(earlier) | set(now) if earlier.get(k) != now.get(k))


def claim_record(store: Store, name: str, record: dict, kind: str) -> None:
    """Write `record` as the JSON file `name` of `store`, or check that the one there is the same:
    a re-run of the same `kind` (job, run) resumes; another is refused, naming what differs."""
    record = json.loads(json.dumps(record))  # as it reads back (tuples are lists)
    if not store.exists(name):
        store.write_text(name, json.dumps(record, indent=2) + "\n")
        return
    try:
        earlier = json.loads(store.read_text(name))
    except ValueError as error:
        raise JobFailed(f"{store.location(name)}: damaged ({error}); it records which {kind} {store} holds, so it "
                        "cannot be resumed safely: choose another output directory") from None
    if earlier != record:
        raise InputError(f"{store} holds the output of a different {kind} (differs in: "
                         f"{', '.join(differing_keys(earlier, record))}). Re-run with the same arguments to resume it, "
                         "or choose another output directory.")


def open_store(location: str | os.PathLike) -> Store:
    """The store of an output directory: an fsspec URL is an object store prefix; anything else
    (a `file://` URL too) a local directory."""
    text = os.fspath(location)
    if is_url(text):
        return RemoteStore(text)
    return LocalStore(local_path(text))
