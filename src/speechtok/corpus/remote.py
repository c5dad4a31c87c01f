"""Audio files and containers named by fsspec URLs (`s3://`, `gs://`, `hf://`, `https://`, ...) as
corpus inputs.

An input URL is a file, a prefix (every audio file under it, ids relative to it without the
extension, as for a local directory) or a glob. Each audio file is fetched whole with fsspec and
decoded from memory (see `fetch_url`). Containers among them (Parquet files of a Hugging Face
dataset, WebDataset .tar shards) are copied whole into the local cache (`cached_copy`), which
reading a row group or a member in place needs, and read like local ones.
A Hugging Face hub dataset is the URL of its repository, `hf://datasets/<org>/<name>` (or a
folder or glob inside it, `hf://datasets/<org>/<name>/data/train-*.parquet`): its Parquet files.
Credentials and endpoints are the file system's own: for S3, the usual AWS variables and files
(`AWS_PROFILE`, `AWS_ENDPOINT_URL` for S3-compatible servers); S3 needs `pip install s3fs`, GCS
`gcsfs`.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import threading
from pathlib import Path

from ..audio import AUDIO_EXTENSIONS
from ..errors import InputError, NotFoundError
from ..hub import cache_dir

CONTAINER_EXTENSIONS = (".parquet", ".tar")


def is_url(text: str) -> bool:
    """A URL fsspec opens, other than a local `file://` one (local paths are read directly)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isidentifier() and scheme != "file"


def local_path(text: str) -> Path:
    """A location that is not a URL (`is_url`) as a local path (`file://` removed)."""
    return Path(text.removeprefix("file://"))


def file_system(url: str):
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as error:  # s3fs / gcsfs missing
        raise InputError(f"{url}: reading it needs a package that is not installed ({error})") from None
    except ValueError as error:  # an unknown protocol
        raise InputError(f"{url}: {error}") from None


def list_url(url: str) -> tuple[list[tuple[str, str]], list[str]]:
    """What `url` names (itself, the files under it, or a glob's matches): (name, url) of its audio
    files, the name relative to a prefix (else the URL), and the URLs of its containers."""
    fs, path = file_system(url)
    try:
        if glob.has_magic(path):
            found, base = sorted(fs.glob(path)), None
        elif fs.isdir(path):
            found, base = sorted(fs.find(path)), path.rstrip("/") + "/"
        else:
            found, base = ([path] if fs.exists(path) else None), None
    except (OSError, PermissionError, ValueError) as error:
        raise InputError(f"{url}: cannot be listed ({type(error).__name__}: {error})") from None
    if found is None:  # raised here, not in the try: NotFoundError is an OSError, which it would re-label
        raise NotFoundError(f"{url}: no such file or prefix")
    audio = [p for p in found if p.lower().endswith(AUDIO_EXTENSIONS)]
    containers = [fs.unstrip_protocol(p) for p in found if p.lower().endswith(CONTAINER_EXTENSIONS)]
    if not audio and not containers:
        raise InputError(f"{url}: names no audio files, Parquet files or .tar shards")

    def name(p: str) -> str:
        return p[len(base):] if base and p.startswith(base) else fs.unstrip_protocol(p)

    # http(s) paths keep their scheme: not added twice
    return [(name(p), fs.unstrip_protocol(p)) for p in audio], containers


_copies: dict[str, Path] = {}  # url -> its copy, for this process (readers ask once per member)
_copies_lock = threading.Lock()


def cached_copy(url: str) -> Path:
    """A local copy of the file at `url`, under $SPEECHTOK_CACHE/remote, fetched once: kept while
    the object's size and version (ETag, hub hashes, or modification time) stay the same. Written
    under a temporary name, so a copy that exists is whole. Looked up once per process."""
    with _copies_lock:
        if url not in _copies:
            _copies[url] = _fetch_copy(url)
        return _copies[url]


def _fetch_copy(url: str) -> Path:
    fs, path = file_system(url)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise NotFoundError(f"{url}: no such file") from None
    # what changes when the object does: S3's ETag, the hub's blob / LFS / Xet hashes, else a time
    version = str(info.get("ETag") or info.get("etag") or info.get("blob_id") or (info.get("lfs") or {}).get("sha256")
                  or info.get("xet_hash") or info.get("LastModified") or info.get("mtime") or "")
    key = hashlib.sha256(f"{url}\n{info.get('size')}\n{version}".encode()).hexdigest()[:24]
    target = cache_dir() / "remote" / key / url.rstrip("/").rsplit("/", 1)[-1]
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
        try:
            fs.get_file(path, str(tmp))
            os.replace(tmp, target)
        except OSError as error:
            raise InputError(f"{url}: cannot be fetched ({type(error).__name__}: {error})") from None
        finally:
            tmp.unlink(missing_ok=True)
    return target


def fetch_url(url: str) -> io.BytesIO:
    """The object at `url`, fetched whole into memory. Not handed to libsndfile as a remote file:
    its read callbacks swallow exceptions, so a network error mid-file would read as the end of
    the audio (a silently shortened utterance); here it raises, and the input is recorded as failed."""
    fs, path = file_system(url)
    with fs.open(path, "rb") as f:
        return io.BytesIO(f.read())
