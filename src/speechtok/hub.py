"""Fetching published files: from the Hugging Face Hub (huggingface_hub) or a published URL.

Nothing is fetched unless a user names a hub model or a preset. Offline (HF_HUB_OFFLINE=1, or no
network), a file that is not cached fails at once with a message saying what to fetch and where
to put it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from .errors import FormatError, NotFoundError


class MissingFileError(NotFoundError):
    """A published file is needed and is neither cached nor downloadable now."""


def cache_dir() -> Path:
    """Where files fetched from plain URLs are kept: $SPEECHTOK_CACHE or ~/.cache/speechtok."""
    return Path(os.environ.get("SPEECHTOK_CACHE", Path.home() / ".cache" / "speechtok"))


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_file(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """A file of a Hugging Face Hub repo, from the local HF cache or downloaded into it."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except (LocalEntryNotFoundError, EntryNotFoundError, RepositoryNotFoundError, OSError) as err:
        raise MissingFileError(
            f"{filename} of the Hugging Face repo {repo_id} is not in the local cache and could not "
            f"be downloaded ({type(err).__name__}). On a machine with internet run:\n"
            f"    hf download {repo_id} {filename}\n"
            f"then copy the Hugging Face cache ({_hf_cache()}) here, or point HF_HUB_CACHE at it."
        ) from None


def url_file(url: str, relative_path: str) -> Path:
    """A file published at `url`, kept as cache_dir()/relative_path."""
    target = cache_dir() / relative_path
    if target.exists():
        return target
    help_text = (
        f"{url} is needed and is not cached. Download it and put it at\n    {target}\n"
        f"(or set SPEECHTOK_CACHE to the directory that holds {relative_path})."
    )
    if offline():
        raise MissingFileError(help_text)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, suffix=".part")
    os.close(handle)
    partial = Path(name)
    try:
        with urllib.request.urlopen(url, timeout=30) as response, partial.open("wb") as out:
            shutil.copyfileobj(response, out)
        os.replace(partial, target)  # a partial download never takes the final name
    except OSError as err:
        raise MissingFileError(f"{help_text}\nDownload failed: {err}") from None
    finally:
        partial.unlink(missing_ok=True)
    return target


def model_load_error(name: str, err: Exception) -> Exception:
    """A clear error for a model that transformers could not load."""
    if Path(name).exists():
        return FormatError(f"{name}: not a loadable transformers model directory ({err})")
    return MissingFileError(
        f"the model {name} is not in the local Hugging Face cache and could not be downloaded. "
        f"On a machine with internet run:\n    hf download {name}\n"
        f"then copy the Hugging Face cache ({_hf_cache()}) here, or pass a local directory instead."
    )


def _hf_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)
