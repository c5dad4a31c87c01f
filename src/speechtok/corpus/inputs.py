"""What a corpus job reads: utterances named by files, directories, globs, lists and manifests.

Every utterance gets a stable, unique id: its path relative to the directory or manifest root it
came from, without the extension (`train-clean-100/19/198/19-198-0001`), or the id a JSONL manifest
gives. Explicit files, globs and list entries are named by their path as given, without extension.
Two utterances with one id are an error before any audio is read. Ids are valid UTF-8: bytes of
a file name that are not become `\\xNN` escapes (`audio.readable`); the file is still read by its
real name.
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from ..audio import AUDIO_EXTENSIONS, readable
from ..errors import InputError, NotFoundError
from . import lhotse_manifests
from .containers import Member, container_kind, expand_braces, list_container
from .remote import cached_copy, is_url, list_url

LIST_EXTENSIONS = (".txt", ".lst", ".list")


@dataclass(frozen=True, slots=True)
class Utterance:
    """One unit of work: a file, or the segment [start, start + duration) seconds of one."""

    id: str
    path: str
    start: float | None = None
    duration: float | None = None
    member: Member | None = None  # audio inside `path` (a Parquet / Arrow row, a tar member)

    @property
    def locator(self) -> str:
        """The file, or `file#member` for audio inside a container."""
        return self.path if self.member is None else f"{self.path}#{self.member.name}"

    def describe(self) -> str:
        if self.start is None and self.duration is None:
            return self.locator
        end = "end" if self.duration is None else f"{(self.start or 0) + self.duration:g}s"
        return f"{self.path} [{self.start or 0:g}s-{end}]"


def file_for_id(directory: Path, uid: str, suffix: str) -> Path:
    """Where a per-utterance output file of `uid` goes: always inside `directory`. Ids of explicit
    absolute paths are absolute paths (`/data/a/b`); they, and ids with `..`, are made relative
    (`data/a/b`), so an output never lands beside, or over, the source audio."""
    parts = [p for p in PurePosixPath(uid).parts if p not in ("/", "..", ".")] or ["_"]
    return directory.joinpath(*parts[:-1], parts[-1] + suffix)


def _strip_ext(path: str) -> str:
    """`path` without its extension, as `os.path.splitext` splits it (written out: splitext was
    half of reading a 1M-line manifest). There is an extension when the last dot is in the file
    name and something other than dots comes before it there (`.hidden` has none)."""
    dot = path.rfind(".")
    name = path.rfind("/") + 1
    if dot <= name or not path[name:dot].strip("."):
        return path
    return path[:dot]


def _given_id(path: str) -> str:
    return readable(_strip_ext(os.path.normpath(path)))


def from_directory(directory: Path) -> list[Utterance]:
    """Every entry with an audio extension that is not a directory: broken symbolic links, FIFOs
    and other non-files too, so they are recorded as failed inputs rather than silently missing."""
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and not p.is_dir())
    return [Utterance(readable(_strip_ext(p.relative_to(directory).as_posix())), str(p)) for p in files]


def from_tsv(manifest: Path) -> list[Utterance]:
    """fairseq's manifest: a root directory line, then `relative/path<TAB>num_samples` lines."""
    lines = manifest.read_text().splitlines()
    if not lines:
        raise InputError(f"{manifest}: empty manifest (expected a root line, then path<TAB>samples lines)")
    root = Path(lines[0].strip())  # relative roots are relative to the working directory, as in fairseq
    prefix = "" if str(root) == "." else str(root).rstrip("/") + "/"
    out = []
    for line in lines[1:]:
        if not line.strip():
            continue
        relative = line.split("\t", 1)[0]
        # `root / relative` as pathlib writes it, by string joining when that is the same (pathlib
        # per line was half of reading a 1M-line manifest)
        path = prefix + relative if _plain(relative) else str(root / relative)
        out.append(Utterance(_strip_ext(relative), path))
    return out


def _plain(relative: str) -> bool:
    """Whether pathlib would keep `relative` as it is when joining it to a root."""
    return bool(relative) and not relative.startswith(("/", "./")) and "//" not in relative \
        and "/./" not in relative and not relative.endswith(("/", "/.")) and relative != "."


def from_jsonl(manifest: Path) -> list[Utterance]:
    """One JSON object per line: {"id", "path", "start"?, "duration"?} (seconds; segments of
    longer files). Relative paths are taken relative to the manifest's directory."""
    out = []
    for number, line in enumerate(manifest.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            path = Path(entry["path"])
            start = entry.get("start")
            duration = entry.get("duration")
            utterance_id = str(entry.get("id") or _strip_ext(entry["path"]))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise InputError(f"{manifest}:{number}: not a manifest entry with at least a \"path\" ({error})") from None
        try:
            start, duration = (None if v is None else float(v) for v in (start, duration))
        except (TypeError, ValueError):
            raise InputError(f"{manifest}:{number}: \"start\" and \"duration\" must be numbers of seconds, "
                             f"got {entry.get('start')!r} and {entry.get('duration')!r}") from None
        if not path.is_absolute():
            path = manifest.parent / path
        out.append(Utterance(utterance_id, str(path), start, duration))
    return out


def from_list(listing: Path) -> list[Utterance]:
    """One audio path per line (relative to the list's directory unless absolute)."""
    out = []
    for line in listing.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(line) if Path(line).is_absolute() else listing.parent / line
            out.append(Utterance(_given_id(line), str(path)))
    return out


def from_container(path: Path, id_column: str | None = None) -> list[Utterance]:
    return [Utterance(uid, where, member=member) for uid, where, member in list_container(path, id_column)]


HUB_NAME = re.compile(r"[\w.-]+/[\w.-]+")  # what a missing local path may have meant as a hub dataset


def collect(inputs: Sequence[str | os.PathLike], id_column: str | None = None) -> list[Utterance]:
    """All utterances named by `inputs`, in the order given (directories sorted by path).

    An input is an audio file, a directory (searched recursively for audio files), a glob
    (`data/**/*.flac`), a text list of paths (.txt/.lst), a fairseq .tsv, a JSONL manifest, or a
    container of audio (`containers`): Parquet files and `save_to_disk` directories of Hugging
    Face datasets, WebDataset .tar shards (brace patterns: `shards/train-{000..009}.tar`).
    `id_column` names the ids' column of Parquet / Arrow inputs. Lhotse manifests
    (`lhotse_manifests`): a CutSet, or a RecordingSet with its SupervisionSet. fsspec URLs
    (`s3://bucket/prefix`, globs too; `remote`) name audio files and containers in object stores;
    `hf://datasets/<org>/<name>` a Hugging Face hub dataset (its Parquet files).
    """
    utterances: list[Utterance] = []
    # Lhotse manifests: supervisions take their files from the RecordingSet(s) given beside them
    lhotse = {str(i): lhotse_manifests.kind(Path(i)) for i in inputs
              if lhotse_manifests.is_jsonl(Path(i)) and Path(i).is_file()}
    files = {k: v for i, kind in lhotse.items() if kind == "recordings" for k, v in lhotse_manifests.recordings(Path(i)).items()}
    supervised = "supervisions" in lhotse.values()
    for item in inputs:
        path = Path(item)
        text = str(item)
        kind = lhotse.get(text)
        if is_url(text):
            audio, containers = list_url(text)
            utterances += [Utterance(readable(_strip_ext(name)), url) for name, url in audio]  # ids as for a directory
            # listed from a local copy, but named by the URL: the job's digest and the rows do not
            # depend on where the cache is, and each process reads (and caches) what it reads
            utterances += [Utterance(u.id, url, member=u.member)
                           for url in containers for u in from_container(cached_copy(url), id_column)]
        elif kind is not None:
            if kind == "supervisions" and not files:
                raise InputError(f"{text}: a Lhotse SupervisionSet needs its RecordingSet as an input too")
            segments = (lhotse_manifests.from_cuts(path) if kind == "cuts" else
                        lhotse_manifests.from_supervisions(path, files) if kind == "supervisions" else
                        [] if supervised else lhotse_manifests.from_recordings(path))
            utterances += [Utterance(readable(uid), where, start, duration) for uid, where, start, duration in segments]
        elif container_kind(path) is not None and path.exists():
            utterances += from_container(path, id_column)
        elif path.is_dir():
            utterances += from_directory(path)
        elif path.is_file():
            suffix = path.suffix.lower()
            if suffix == ".tsv":
                utterances += from_tsv(path)
            elif suffix in (".jsonl", ".json"):
                utterances += from_jsonl(path)
            elif suffix in LIST_EXTENSIONS:
                utterances += from_list(path)
            else:  # any other file is taken as audio; the reader reports it if it is not
                utterances.append(Utterance(_given_id(text), text))
        elif glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            audio = [m for m in matches if Path(m).suffix.lower() in AUDIO_EXTENSIONS]
            shards = [m for m in matches if container_kind(Path(m)) is not None]
            if not audio and not shards:
                raise InputError(f"{text}: the pattern matches no audio files or containers")
            utterances += [Utterance(_given_id(m), m) for m in audio]
            utterances += [u for m in shards for u in from_container(Path(m), id_column)]
        elif "{" in text and (expanded := expand_braces(text)) != [text]:
            missing = [e for e in expanded if not Path(e).exists()]
            if missing:
                raise NotFoundError(f"{text}: {len(missing)} of the {len(expanded)} files it names do not exist "
                                    f"(first: {missing[0]})")
            utterances += collect(expanded, id_column)
        else:
            hint = f" (a Hugging Face hub dataset is named hf://datasets/{text})" if HUB_NAME.fullmatch(text) else ""
            raise NotFoundError(f"{text}: no such file or directory{hint}")
    check_unique(utterances)
    return utterances


def check_unique(utterances: Iterable[Utterance]) -> None:
    seen: dict[str, Utterance] = {}
    clashes = []
    for u in utterances:
        if u.id in seen:
            clashes.append(f"{u.id!r} ({seen[u.id].describe()} and {u.describe()})")
        else:
            seen[u.id] = u
    if clashes:
        shown = "; ".join(clashes[:5]) + (f"; and {len(clashes) - 5} more" if len(clashes) > 5 else "")
        raise InputError(f"{len(clashes)} duplicate utterance id(s): {shown}. Ids must be unique; "
                         "give a JSONL manifest with explicit ids to rename them")


def shard_range(total: int, rank: int, nshard: int) -> range:
    """The utterances rank `rank` of `nshard` processes, as fairseq's `get_shard_range` splits."""
    if nshard < 1 or not 0 <= rank < nshard:
        raise InputError(f"--rank must be in 0..{nshard - 1} for --nshard {nshard}, got {rank}")
    start = round(total / nshard * rank)
    end = round(total / nshard * (rank + 1))
    return range(start, end)


def split_name(inputs: Sequence[str | os.PathLike]) -> str | None:
    """fairseq names label files after the manifest: train.tsv -> train (train.km); None unless
    the inputs are one .tsv."""
    return Path(inputs[0]).stem if len(inputs) == 1 and str(inputs[0]).endswith(".tsv") else None
