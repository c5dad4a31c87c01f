"""Encoders: audio -> per-frame features, one stream per SSL layer (`L<n>`) or `mfcc`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .base import Encoder
from .featurizer import Featurizer
from .mfcc import MFCCEncoder
from .ssl import SSLEncoder

__all__ = ["Encoder", "Featurizer", "MFCCEncoder", "SSLEncoder", "from_config"]


def from_config(
    config: dict,
    layers: Sequence[int] = (),
    base_dir: str | Path | None = None,
    **options,
) -> Encoder:
    """Rebuild an encoder from `Encoder.config()`. A relative model path is taken relative to
    `base_dir` (the directory the config was saved in); `options` are device / dtype / chunk_seconds."""
    kind = config.get("type")
    if kind == "mfcc":
        return MFCCEncoder(sample_rate=config.get("sample_rate", 16000), device=options.get("device", "cpu"))
    if kind == "ssl":
        model = config["model"]
        if base_dir is not None and not Path(model).is_absolute() and (Path(base_dir) / model).exists():
            model = str(Path(base_dir) / model)
        options.setdefault("chunk_seconds", config.get("chunk_seconds"))
        return SSLEncoder.from_pretrained(
            model, layers, revision=config.get("revision"), normalize=config.get("normalize"), **options
        )
    raise ValueError(f"unknown encoder type {kind!r} (expected 'ssl' or 'mfcc')")
