"""Audio kept inside other files: Hugging Face datasets (Parquet files and `save_to_disk`
directories) and WebDataset tar shards. `list_*` turns a container into utterances, each with a
`Member` saying where its audio is; `fetch` gives the audio of one (what `AudioReader` reads).

Id rules (`--id-column`):

- Parquet / Arrow: the `--id-column` if given; else an `id` column if there is one; else the
  audio's `path` without its extension when every row has a different one; else `<file stem>/<row>`.
  The audio column is `audio` (or the only column whose type is an audio struct): a struct of
  `{bytes, path}` (bytes of an encoded file; null bytes: read `path`, relative to the container),
  or of `{array, sampling_rate}` (samples).
- WebDataset: the `__key__` of each sample, its member name up to the first dot of the file name
  (`shard/utt001.flac` -> `shard/utt001`); audio members are those with an audio extension.
  Uncompressed tars only (their members can be read in place).

Containers are read a row group (Parquet) or a memory-mapped file (Arrow) at a time, cached per
thread-safe LRU of a few entries: readers go through a container in order, so each row group is
read once.
"""

from __future__ import annotations

import io
import os
import tarfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..audio import AUDIO_EXTENSIONS, readable
from ..errors import FormatError, InputError

DATASET_FILES = ("dataset_info.json", "state.json")  # what `save_to_disk` writes beside its .arrow files


class Member(NamedTuple):
    """Where an utterance's audio is inside its container (`Utterance.path`)."""

    kind: str  # "parquet", "arrow" or "tar"
    row: int  # parquet / arrow: the row in the file; tar: the offset of the member's data
    size: int  # tar: the member's size in bytes
    name: str  # in messages and the rows' `path`: the row number, or the tar member's name


def is_dataset_dir(path: Path) -> bool:
    return path.is_dir() and all((path / name).exists() for name in DATASET_FILES)


def container_kind(path: Path) -> str | None:
    if is_dataset_dir(path):
        return "arrow"
    suffix = path.suffix.lower()
    return {".parquet": "parquet", ".arrow": "arrow", ".tar": "tar"}.get(suffix)


def list_container(path: Path, id_column: str | None = None) -> list[tuple[str, str, Member]]:
    """(id, container path, member) of every audio item in a container, in its order."""
    kind = container_kind(path)
    if kind == "tar":
        return _list_tar(path)
    files = sorted(path.glob("*.arrow")) if path.is_dir() else [path]
    return [item for f in files for item in _list_table(f, "arrow" if f.suffix == ".arrow" else "parquet", id_column,
                                                         several=len(files) > 1)]


# --- tables ---------------------------------------------------------------------------------

def _schema(path: Path, kind: str) -> pa.Schema:
    return pq.read_schema(path) if kind == "parquet" else _arrow_table(str(path)).schema


def audio_column(schema: pa.Schema, where: Path) -> str:
    """`audio`, or the only struct column holding {bytes, path} or {array, sampling_rate}."""
    def is_audio(field: pa.Field) -> bool:
        return pa.types.is_struct(field.type) and (
            {"bytes", "path"} <= {f.name for f in field.type} or {"array", "sampling_rate"} <= {f.name for f in field.type})

    candidates = [f.name for f in schema if is_audio(f)]
    if "audio" in candidates or (len(candidates) == 1):
        return "audio" if "audio" in candidates else candidates[0]
    raise FormatError(f"{where}: no audio column (a struct of bytes and path, or of array and sampling_rate); "
                      f"columns: {', '.join(schema.names)}" if not candidates else
                      f"{where}: several audio columns ({', '.join(candidates)}); name one `audio`")


def _list_table(path: Path, kind: str, id_column: str | None, several: bool) -> list:
    try:
        schema = _schema(path, kind)
    except (OSError, pa.ArrowException) as error:
        raise FormatError(f"{path}: not a readable {kind} file ({error})") from None
    audio = audio_column(schema, path)
    names = set(schema.names)
    if id_column is not None and id_column not in names:
        raise InputError(f"{path}: no column {id_column!r} for the ids (columns: {', '.join(schema.names)})")
    column = id_column or ("id" if "id" in names else None)
    if column is not None:
        ids = [str(v) for v in _column(path, kind, [column]).column(column).to_pylist()]
    else:
        inner = {f.name for f in schema.field(audio).type}
        paths = _paths(path, kind, audio) if "path" in inner else []
        ids = [os.path.splitext(p)[0] if p else None for p in paths]
        if not ids or any(i is None for i in ids) or len(set(ids)) < len(ids):  # missing or repeated names
            prefix = f"{path.stem}/" if several or kind == "parquet" else ""
            ids = [f"{prefix}{row:08d}" for row in range(_num_rows(path, kind))]
    return [(readable(uid), str(path), Member(kind, row, 0, str(row))) for row, uid in enumerate(ids)]


def _column(path: Path, kind: str, columns: list[str]) -> pa.Table:
    return pq.read_table(path, columns=columns) if kind == "parquet" else _arrow_table(str(path)).select(columns)


def _paths(path: Path, kind: str, audio: str) -> list[str | None]:
    """The audio struct's `path` field of every row, without touching the audio bytes."""
    if kind == "parquet":
        return pq.read_table(path, columns=[f"{audio}.path"]).column(0).to_pylist()  # only that leaf is read
    return pc.struct_field(_arrow_table(str(path)).column(audio), "path").to_pylist()


def _num_rows(path: Path, kind: str) -> int:
    return pq.ParquetFile(path).metadata.num_rows if kind == "parquet" else _arrow_table(str(path)).num_rows


class _Cache:
    """A few recently read row groups / tables, shared by the reader threads."""

    def __init__(self, size: int = 4):
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key, load):
        # loaded under the lock: threads that miss together would each load the same row group
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
            value = self.items[key] = load()
            while len(self.items) > self.size:
                self.items.popitem(last=False)
            return value


_CACHE = _Cache()
_AUDIO_COLUMNS: dict[str, str] = {}  # container path -> its audio column


def _arrow_table(path: str) -> pa.Table:
    """A `save_to_disk` .arrow file (an Arrow IPC stream), memory-mapped: rows are read from the
    page cache as they are used."""
    def load():
        source = pa.memory_map(path)
        try:
            return pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            return pa.ipc.open_file(source).read_all()

    return _CACHE.get(("arrow", path), load)


def _row(path: str, kind: str, row: int, column: str) -> dict:
    if kind == "arrow":
        return _arrow_table(path).column(column)[row].as_py()
    metadata = _CACHE.get(("meta", path), lambda: pq.ParquetFile(path).metadata)
    group, start = 0, 0
    while start + metadata.row_group(group).num_rows <= row:
        start += metadata.row_group(group).num_rows
        group += 1
    table = _CACHE.get(("parquet", path, group), lambda: pq.ParquetFile(path).read_row_group(group, columns=[column]))
    return table.column(column)[row - start].as_py()


def fetch(path: str, member: Member):
    """The audio of one member: (source, sample_rate) for `load_audio` - a file object of encoded
    audio (rate None), a path, or samples with their rate."""
    if member.kind == "tar":
        with open(path, "rb") as f:
            f.seek(member.row)
            return io.BytesIO(f.read(member.size)), None
    column = _AUDIO_COLUMNS.get(path) or _AUDIO_COLUMNS.setdefault(
        path, audio_column(_schema(Path(path), member.kind), Path(path)))
    value = _row(path, member.kind, member.row, column)
    if value is None:
        raise InputError(f"{path}#{member.name}: no audio in this row")
    if value.get("bytes"):
        return io.BytesIO(value["bytes"]), None
    if value.get("array") is not None:
        return np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
    if value.get("path"):
        where = Path(value["path"])
        return (where if where.is_absolute() else Path(path).parent / where), None
    raise InputError(f"{path}#{member.name}: the audio has neither bytes nor a path")


# --- WebDataset -------------------------------------------------------------------------------

def _list_tar(path: Path) -> list:
    try:
        archive = tarfile.open(path, "r:")  # uncompressed only: members are read in place
    except tarfile.ReadError as error:
        raise FormatError(f"{path}: not an uncompressed tar ({error}); WebDataset shards are plain .tar files") from None
    out = []
    with archive:
        for info in archive:
            if not info.isfile() or not info.name.lower().endswith(AUDIO_EXTENSIONS):
                continue
            directory, base = os.path.split(info.name)
            key = os.path.join(directory, base.split(".", 1)[0])  # WebDataset's __key__
            out.append((readable(key), str(path), Member("tar", info.offset_data, info.size, info.name)))
    return out


def expand_braces(pattern: str) -> list[str]:
    """WebDataset's brace patterns: `shard-{000..009}.tar` (zero-padded ranges) and `{a,b}`."""
    start = pattern.find("{")
    if start < 0:
        return [pattern]
    end = pattern.find("}", start)
    if end < 0:
        return [pattern]
    inside, head, tail = pattern[start + 1 : end], pattern[:start], pattern[end + 1 :]
    if ".." in inside:
        low, high = inside.split("..", 1)
        if not (low.isdigit() and high.isdigit()):
            raise InputError(f"{pattern}: a brace range must be numeric, like {{000..099}}")
        width = len(low) if low.startswith("0") else 0
        options = [str(i).zfill(width) for i in range(int(low), int(high) + 1)]
    else:
        options = inside.split(",")
    return [head + option + rest for option in options for rest in expand_braces(tail)]
