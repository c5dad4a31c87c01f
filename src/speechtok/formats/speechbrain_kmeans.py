"""The k-means files of a SpeechBrain DiscreteSSL repository: `kmeans/<name>_L<layer>.pt`, one per
SSL layer (scikit-learn pickles, read through `sklearn_pickle`'s allow-list)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import NotFoundError
from ..hub import local_or_hub, offline

_LAYER_FILE = re.compile(r"_L(\d+)\.pt$")


def kmeans_files(source: str | os.PathLike) -> dict[int, Path]:
    """layer -> k-means file of a SpeechBrain repo (local directory, or hub id fetched/cached)."""
    directory = Path(local_or_hub(str(source)))  # a missing local path fails here, not as a download
    if not directory.is_dir():
        from huggingface_hub import snapshot_download

        try:  # offline, the cache only: fail at once, not after retries
            directory = Path(snapshot_download(str(source), allow_patterns=["kmeans/*"], local_files_only=offline()))
        except Exception as error:  # noqa: BLE001 - offline, unknown repo: say what was tried
            raise NotFoundError(f"{source}: not a local directory, and the hub repo could not be "
                                f"fetched ({type(error).__name__}: {error})") from None
    files = {}
    for path in sorted((directory / "kmeans").glob("*.pt")):
        match = _LAYER_FILE.search(path.name)
        if match:
            files[int(match.group(1))] = path
    if not files:
        raise NotFoundError(f"{source}: no kmeans/<name>_L<layer>.pt files (a SpeechBrain "
                            "DiscreteSSL / unit-HiFi-GAN repo has them)")
    return files


def has_vocoder(directory: Path) -> bool:
    from .speechbrain_vocoder import GENERATOR, HYPERPARAMS

    return (directory / HYPERPARAMS).exists() and (directory / GENERATOR).exists()
