"""Audio files named by fsspec URLs (`s3://`, `gs://`, `hf://`, `https://`, ...) as corpus inputs.

An input URL is a file, a prefix (every audio file under it, ids relative to it without the
extension, as for a local directory) or a glob. Each file is fetched whole with fsspec and
decoded from memory (see `fetch_url`).
Credentials and endpoints are the file system's own: for S3, the usual AWS variables and files
(`AWS_PROFILE`, `AWS_ENDPOINT_URL` for S3-compatible servers); S3 needs `pip install s3fs`, GCS
`gcsfs`.
"""

from __future__ import annotations

import glob
import io

from ..audio import AUDIO_EXTENSIONS
from ..errors import InputError, NotFoundError


def is_url(text: str) -> bool:
    """A URL fsspec opens, other than a local `file://` one (local paths are read directly)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isidentifier() and scheme != "file"


def _file_system(url: str):
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as error:  # s3fs / gcsfs missing
        raise InputError(f"{url}: reading it needs a package that is not installed ({error})") from None
    except ValueError as error:  # an unknown protocol
        raise InputError(f"{url}: {error}") from None


def list_url(url: str) -> list[tuple[str, str]]:
    """(id, url) of the audio files `url` names: itself, the files under it, or a glob's matches."""
    fs, path = _file_system(url)
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
    if not audio:
        raise InputError(f"{url}: names no audio files")

    def ident(p: str) -> str:
        name = p[len(base):] if base and p.startswith(base) else fs.unstrip_protocol(p)
        return name.rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name

    return [(ident(p), fs.unstrip_protocol(p)) for p in audio]  # http(s) paths keep their scheme: not added twice


def fetch_url(url: str) -> io.BytesIO:
    """The object at `url`, fetched whole into memory. Not handed to libsndfile as a remote file:
    its read callbacks swallow exceptions, so a network error mid-file would read as the end of
    the audio (a silently shortened utterance); here it raises, and the input is recorded as failed."""
    fs, path = _file_system(url)
    with fs.open(path, "rb") as f:
        return io.BytesIO(f.read())
