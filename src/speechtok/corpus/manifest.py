"""The tokenized-corpus data model: what a corpus job writes, and the one way to read it back.

A job's output directory holds, per rank, `manifest[-R-of-N].json` (a `CorpusManifest`: what made
the corpus and which shards hold it), `errors[-R-of-N].jsonl`, and `data/part-R-N.parquet` shards
(one row per utterance). `TokenizedCorpus.open(dir)` checks that every rank finished and gives
the rows (`table`), the Units of each utterance (`iter_units`) or one stream's sequences
(`sequences`). export, decode, eval, hubert-labels and `bpe train` read a corpus only through it;
`Units.to_row` / `Units.from_row` are the one conversion between Units and a row.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa

from ..errors import FormatError, InputError, JobFailed, NotFoundError, UnknownNameError
from ..units import Units
from .store import Store, open_store

DATA_DIR = "data"  # only Parquet in here, so `pd.read_parquet(OUT/data)` reads it all
TYPE = "corpus-manifest"


@dataclass
class ShardRecord:
    """One committed shard: its file (relative to the corpus directory), rows, failed inputs, the
    span of input indices it covers, and its size and sha256 when it was committed."""

    file: str
    rows: int
    errors: int
    first_index: int
    stop_index: int
    bytes: int | None = None  # the file's size and sha256 when it was committed
    sha256: str | None = None


@dataclass
class CorpusManifest:
    """What `manifest[-R-of-N].json` holds. `job` is the job's signature (what decides the output:
    command, tokenizer or encoder, options, inputs digest, nshard, shard_size); the fields after
    `shards` describe the stored units (tokenize) or features (extract)."""

    speechtok_version: str
    command: list[str]
    job: dict
    rank: int
    rows: int
    errors: int
    schema: dict[str, str]
    shards: list[ShardRecord]
    # tokenize
    tokenizer: dict | None = None
    tokenizer_source: str | None = None  # the directory or preset name it was loaded from
    streams: list[str] | None = None
    vocab_sizes: list[int] | None = None
    dedup: bool = False
    split: str | None = None  # the corpus's name in exported files ({split}.km)
    bpe: dict | None = None
    # tokenize and extract
    frame_rate: float | None = None
    sample_rate: int | None = None
    # extract
    encoder: dict | None = None
    dims: dict[str, int] | None = None
    extra: dict = field(default_factory=dict)  # keys a newer speechtok wrote

    @property
    def kind(self) -> str:
        """The command that wrote it: tokenize, extract."""
        return str(self.job.get("command"))

    def to_dict(self) -> dict:
        data = asdict(self)
        extra = data.pop("extra")
        return {"type": TYPE, **data, **extra}

    @classmethod
    def from_dict(cls, data: dict, path: str | os.PathLike = "manifest.json") -> CorpusManifest:
        data = dict(data)
        data.pop("type", None)
        names = {f.name for f in fields(cls)} - {"extra"}
        try:
            data["shards"] = [ShardRecord(**s) for s in data["shards"]]
            known = {k: v for k, v in data.items() if k in names}
            return cls(**known, extra={k: v for k, v in data.items() if k not in names})
        except (KeyError, TypeError) as error:
            raise FormatError(f"{path}: not a speechtok corpus manifest ({type(error).__name__}: {error})") from None

    @classmethod
    def read(cls, store: Store, name: str) -> CorpusManifest:
        where = store.location(name)
        try:
            return cls.from_dict(json.loads(store.read_text(name)), where)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise FormatError(f"{where}: not valid JSON ({error}); the corpus directory is damaged") from None


def read_manifests(directory: str | os.PathLike | Store) -> list[CorpusManifest]:
    """Every rank's manifest, checked to be complete (all ranks of the job finished). `directory`:
    a local directory or an object store URL (`store.open_store`)."""
    store = open_store(directory) if isinstance(directory, (str, os.PathLike)) else directory
    names = store.glob("manifest*.json")
    if not names:
        if not store.is_dir():
            raise NotFoundError(f"{directory}: no such directory")
        raise InputError(f"{directory}: no manifest.json; not a finished speechtok corpus job (re-run the "
                         "command that writes it to finish it)")
    manifests = [CorpusManifest.read(store, name) for name in names]
    nshard = manifests[0].job.get("nshard", 1)
    ranks = {m.rank for m in manifests}
    if any(m.job != manifests[0].job for m in manifests):
        raise InputError(f"{directory}: its manifests were written by different jobs; it is not one corpus")
    if len(ranks) != nshard:
        missing = sorted(set(range(nshard)) - ranks)
        raise InputError(f"{directory}: ranks {missing} of {nshard} have not finished; run them first")
    return sorted(manifests, key=lambda m: m.rank)


class TokenizedCorpus:
    """A finished `speechtok tokenize` output directory."""

    def __init__(self, directory: str | os.PathLike, manifests: Sequence[CorpusManifest]):
        self.store = open_store(directory)
        self.directory = self.store.where
        self.manifests = list(manifests)
        first = self.manifests[0]
        self.streams: list[str] = list(first.streams or first.dims or [])  # units, or extract's feature layers
        self.vocab_sizes: list[int] = list(first.vocab_sizes or [])
        self.frame_rate = float(first.frame_rate or 0)
        self.sample_rate = int(first.sample_rate or 0)
        self.dedup = bool(first.dedup)
        self.split = first.split
        self.tokenizer = first.tokenizer or {}
        self.tokenizer_source = first.tokenizer_source
        self.bpe = first.bpe

    @classmethod
    def open(cls, directory: str | os.PathLike, kinds: tuple[str, ...] = ("tokenize",)) -> TokenizedCorpus:
        """`directory`: a local directory or an object store URL (`s3://bucket/corpus`), written
        by one of the commands `kinds` (`extract` output reads the same way: its streams are
        its feature layers)."""
        manifests = read_manifests(directory)
        if manifests[0].kind not in kinds:
            raise InputError(f"{directory}: holds `{manifests[0].kind}` output, not {' or '.join(kinds)} output")
        return cls(directory, manifests)

    @property
    def kind(self) -> str:
        return self.manifests[0].kind

    @property
    def errors(self) -> int:
        """Inputs that failed to tokenize (listed in errors*.jsonl)."""
        return sum(m.errors for m in self.manifests)

    @property
    def shard_files(self) -> list[Path | str]:
        """The shard files (paths, or URLs on an object store) in input order: each covers a
        contiguous span of input indices."""
        records = sorted((s for m in self.manifests for s in m.shards), key=lambda s: s.first_index)
        return [self.store.location(s.file) for s in records]

    def __len__(self) -> int:
        return sum(m.rows for m in self.manifests)

    def stream(self, name: str | None) -> str:
        """`name`, checked against the corpus's streams; or its only stream."""
        if name is None:
            if len(self.streams) > 1:
                raise InputError(f"{self.directory} has streams {', '.join(self.streams)}; choose one with --stream")
            return self.streams[0]
        if name not in self.streams:
            raise UnknownNameError(f"{self.directory} has no stream {name!r} (it has {', '.join(self.streams)})")
        return name

    def vocab_size(self, stream: str) -> int:
        return self.vocab_sizes[self.streams.index(stream)]

    def _read(self, path: Path | str, columns: Sequence[str] | None = None) -> pa.Table:
        try:
            return self.store.read_table(path, columns=None if columns is None else list(columns))
        except (OSError, pa.ArrowException) as error:
            raise JobFailed(f"{path}: a damaged shard ({type(error).__name__}: {error}); delete it and re-run "
                            "the tokenize command to redo it") from None

    def tables(self, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        """The rows (or these columns of them, plus `index`) a shard at a time, in input order:
        memory holds one shard, whatever the corpus size (shards cover contiguous, ordered spans
        of inputs, so no global sort is needed). Refuses a corpus without rows."""
        if columns is not None and "index" not in columns:
            columns = [*columns, "index"]
        if len(self) == 0:
            raise InputError(f"{self.directory}: no rows (every input failed?)")
        for path in self.shard_files:
            yield self._read(path, columns).sort_by("index")

    def table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All rows (or these columns of them, plus `index`), in input order, in memory at once
        (`tables` streams them)."""
        return pa.concat_tables(list(self.tables(columns)))

    def row_meta(self) -> dict:
        """What `Units.from_row` needs besides the row."""
        return {"streams": self.streams, "frame_rate": self.frame_rate, "vocab_sizes": self.vocab_sizes,
                "sample_rate": self.sample_rate}

    def iter_units(self, shards: Sequence[Path | str] | None = None) -> Iterator[tuple[str, Units]]:
        """(id, Units) of every utterance (of `shards`, default all), shard by shard (memory: one
        shard). Deduplicated corpora give Units with durations (one stream only: streams were
        deduplicated apart)."""
        return self._units(self.unit_columns(), self.shard_files if shards is None else shards)

    def unit_columns(self) -> list[str]:
        """The columns a row's Units is made of; refused where rows do not make one Units."""
        if self.dedup and len(self.streams) > 1:
            raise InputError(f"{self.directory} was tokenized with --dedup over several streams, each deduplicated "
                             "on its own; such rows do not make one Units (select a stream with sequences())")
        return ["id", "num_samples", *self.streams] + ([f"{self.streams[0]}_durations"] if self.dedup else [])

    def _units(self, columns: list[str], shards: Sequence[Path | str]) -> Iterator[tuple[str, Units]]:
        meta = self.row_meta()
        for path in shards:
            for row in self._read(path, columns).to_pylist():
                yield row["id"], Units.from_row(row, **meta)

    def sequences(self, stream: str, expand: bool = False) -> list[np.ndarray]:
        """The stored codes of `stream` per utterance, in input order (deduplicated if the corpus
        was; `expand=True` repeats each code by its duration, one code per frame again)."""
        durations = f"{stream}_durations"
        table = self.table([stream, *([durations] if self.dedup else [])])
        codes = [np.asarray(c, dtype=np.int64) for c in table.column(stream).to_pylist()]
        if expand and self.dedup:
            runs = table.column(durations).to_pylist()
            codes = [np.repeat(c, d) for c, d in zip(codes, runs)]
        return codes


def read_rows(directory: str | os.PathLike) -> tuple[pa.Table, list[dict]]:
    """All rows of a tokenized corpus in input order, and its manifests as dicts (one per rank).
    A thin alias kept from before `TokenizedCorpus`."""
    corpus = TokenizedCorpus.open(directory)
    return corpus.table(), [m.to_dict() for m in corpus.manifests]
