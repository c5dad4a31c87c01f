"""Fetching published files: from the Hugging Face Hub (huggingface_hub) or a published URL.

Nothing is fetched unless a user names a hub model or a preset. Offline (HF_HUB_OFFLINE=1, or a
quick probe finds the hub unreachable), only local caches are read, so a file that is not cached
fails at once, with a message saying what to fetch and where to put it, instead of after the
download retries run out.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import tempfile
import threading
import urllib.parse
import urllib.request
from pathlib import Path

from .errors import FormatError, NotFoundError

# How long the reachability probe may take. Resolving a name has no timeout of its own and can
# hang on a machine without network, so the probe runs in a thread that is abandoned after this.
PROBE_SECONDS = 1.5
# What a transformers model directory needs: its config, and weights in one of these forms.
MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json",
                 "pytorch_model.bin", "pytorch_model.bin.index.json")
# Suffixes of checkpoint files: a name ending in one is a file the user has, never a hub repo.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".th")


class MissingFileError(NotFoundError):
    """A published file is needed and is neither cached nor downloadable now. `fetch` is the one
    line that gets it (a command, or where to download it to) and `then` what to do with it, so
    that several missing files can be listed in one message."""

    def __init__(self, message: str, fetch: str | None = None, then: str | None = None):
        super().__init__(message)
        self.fetch, self.then = fetch, then

    def __reduce__(self):  # picklable across processes, with its parts
        return (MissingFileError, (str(self), self.fetch, self.then))


# transformers' "Loading weights" bars. The CLI turns them off (they would interleave with its own)
# by setting this, not by importing transformers, which jobs without an SSL model or codec never need.
LOADING_BARS = True


def loading_bars() -> None:
    """Apply `LOADING_BARS` to transformers; called by loaders right before a `from_pretrained`."""
    if not LOADING_BARS:
        from transformers.utils import logging

        logging.disable_progress_bar()


def cache_dir() -> Path:
    """Where files fetched from plain URLs are kept: $SPEECHTOK_CACHE or ~/.cache/speechtok."""
    return Path(os.environ.get("SPEECHTOK_CACHE", Path.home() / ".cache" / "speechtok"))


def offline() -> bool:
    """HF_HUB_OFFLINE is set, or the Hugging Face endpoint cannot be reached (probed once)."""
    return _offline_flag() or not reachable(_hub_endpoint())


def reachable(url: str) -> bool:
    """Whether a TCP connection to `url`'s host (or to the proxy that serves it) opens within
    PROBE_SECONDS; answered once per host for the whole process. URLs without a host (file://)
    are always reachable."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return True
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        host, port = proxy_parts.hostname or host, proxy_parts.port or (443 if proxy_parts.scheme == "https" else 80)
    return _connects(host, port)


@functools.cache
def _connects(host: str, port: int) -> bool:
    result: list[bool] = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True, name="speechtok-network-probe")
    thread.start()
    thread.join(PROBE_SECONDS + 0.5)
    return bool(result and result[0])


def why_offline() -> str:
    return "HF_HUB_OFFLINE is set" if _offline_flag() else f"{_hub_endpoint()} cannot be reached"


def looks_like_path(name: str) -> bool:
    """True for a name that can only mean a file or directory. Hub ids are `name` or `org/name`
    (letters, digits, `-_.`); anything absolute, starting with `.` or `~`, with more than one
    `/`, with a checkpoint suffix, or otherwise not a valid hub id is taken as a path."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if name.startswith((".", "~")) or os.path.isabs(name) or name.count("/") > 1:
        return True
    if any(sep in name for sep in {os.sep, os.altsep} - {None, "/"}):  # Windows' backslash
        return True
    if name.lower().endswith(CHECKPOINT_SUFFIXES):
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def local_or_hub(name: str) -> str:
    """`name` as given (a hub id, or an existing file or directory, with `~` expanded); a path
    that does not exist is refused here, rather than taken for a hub id to download."""
    expanded = os.path.expanduser(name)
    if Path(expanded).exists():
        return expanded
    if looks_like_path(name):
        raise NotFoundError(f"{name}: no such file or directory")
    return name


def hub_file(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """A file of a Hugging Face Hub repo, from the local HF cache or downloaded into it."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    local_only = offline()
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, local_files_only=local_only))
    except (LocalEntryNotFoundError, EntryNotFoundError, RepositoryNotFoundError, OSError) as err:
        why = f"offline: {why_offline()}" if local_only else f"could not be downloaded: {type(err).__name__}"
        fetch, then = f"hf download {repo_id} {filename}", _copy_cache_hint()
        raise MissingFileError(
            f"{filename} of the Hugging Face repo {repo_id} is not in the local cache ({why}). "
            f"On a machine with internet run:\n    {fetch}\n{then}", fetch, then) from None


def hub_model_missing(repo_id: str) -> MissingFileError | None:
    """Offline, the error for a transformers model that is not in the local HF cache (config and
    weights), or None: looked up in the cache only, so a preset can list it with its other
    missing files before anything is loaded. Online, None: it can still be downloaded."""
    if not offline():
        return None
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> bool:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)

    if cached(MODEL_CONFIG) and any(cached(f) for f in MODEL_WEIGHTS):
        return None
    fetch, then = f"hf download {repo_id}", _copy_cache_hint()
    return MissingFileError(
        f"the model {repo_id} is not in the local Hugging Face cache (offline: {why_offline()}). "
        f"On a machine with internet run:\n    {fetch}\n{then}", fetch, then)


def url_file(url: str, relative_path: str) -> Path:
    """A file published at `url`, kept as cache_dir()/relative_path."""
    target = cache_dir() / relative_path
    if target.exists():
        return target
    fetch = f"download {url} to {target}"
    then = f"files downloaded from a URL go at the path shown, under SPEECHTOK_CACHE (now {cache_dir()})."
    help_text = (f"{url} is needed and is not cached. Download it and put it at\n    {target}\n"
                 f"(or set SPEECHTOK_CACHE to the directory that holds {relative_path}).")
    if _offline_flag() or not reachable(url):
        raise MissingFileError(help_text, fetch, then)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, suffix=".part")
    os.close(handle)
    partial = Path(name)
    try:
        with urllib.request.urlopen(url, timeout=30) as response, partial.open("wb") as out:
            shutil.copyfileobj(response, out)
        os.replace(partial, target)  # a partial download never takes the final name
    except OSError as err:
        raise MissingFileError(f"{help_text}\nDownload failed: {err}", fetch, then) from None
    finally:
        partial.unlink(missing_ok=True)
    return target


def missing_files_error(what: str, errors: list[MissingFileError]) -> MissingFileError:
    """One error listing every missing file of `what`: the lines that fetch them, then what to do
    with them (once per kind of place)."""
    fetches = [e.fetch or str(e) for e in errors]
    thens = sorted(dict.fromkeys(e.then for e in errors if e.then), key=lambda t: not t.startswith("then"))
    thens = [t[0].upper() + t[1:] for t in thens]  # "then copy the HF cache" reads right after the commands
    return MissingFileError(
        f"{what} needs {len(errors)} file(s) that are not here. On a machine with internet:\n"
        + "".join(f"    {f}\n" for f in fetches) + "\n".join(thens))


def model_load_error(name: str, err: Exception) -> Exception:
    """A clear error for a model that transformers could not load."""
    if Path(name).exists():
        return FormatError(f"{name}: not a loadable transformers model directory ({err})")
    if looks_like_path(name):
        return NotFoundError(f"{name}: no such file or directory")
    why = f"offline: {why_offline()}" if offline() else "could not be downloaded"
    return MissingFileError(
        f"{name} is not a local file or directory, and the hub model {name} is not in the local "
        f"Hugging Face cache ({why}). On a machine with internet run:\n    hf download {name}\n"
        f"then copy the Hugging Face cache ({_hf_cache()}) here, or pass a local directory instead."
    )


def _offline_flag() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _copy_cache_hint() -> str:
    return f"then copy the Hugging Face cache ({_hf_cache()}) here, or point HF_HUB_CACHE at it."


def _hf_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)
