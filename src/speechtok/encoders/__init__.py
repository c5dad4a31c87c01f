"""Encoders: audio -> per-frame features, one stream per SSL layer (`L<n>`) or `mfcc`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import InputError
from .base import Encoder
from .featurizer import Featurizer
from .mfcc import MFCCEncoder
from .ssl import SSLEncoder

__all__ = ["Encoder", "Featurizer", "MFCCEncoder", "SSLEncoder", "build_encoder", "encoder_from_dict"]


def encoder_from_dict(
    config: dict,
    layers: Sequence[int] = (),
    base_dir: str | Path | None = None,
    **options,
) -> Encoder:
    """Rebuild an encoder from `Encoder.to_dict()`. A relative model path is taken relative to
    `base_dir` (the directory the dict was saved in); `options` are device / dtype / chunk_seconds."""
    kind = config.get("type")
    if kind == "mfcc":
        return MFCCEncoder(sample_rate=config.get("sample_rate", 16000), device=options.get("device", "cpu"))
    if kind == "ssl":
        model = config["model"]
        if base_dir is not None and not Path(model).is_absolute() and (Path(base_dir) / model).exists():
            model = str(Path(base_dir) / model)
        options.setdefault("chunk_seconds", config.get("chunk_seconds"))
        options.setdefault("last_hidden_state", config.get("last_hidden_state", False))
        return SSLEncoder.from_pretrained(
            model, layers, revision=config.get("revision"), normalize=config.get("normalize"), **options
        )
    raise InputError(f"unknown encoder type {kind!r} (expected 'ssl' or 'mfcc')")


def build_encoder(name: str, layers: Sequence[int], **options) -> Encoder:
    """`mfcc`, or an SSL model (hub id, local directory or original checkpoint) truncated to `layers`."""
    if name == "mfcc":
        return MFCCEncoder(device=options.get("device", "cpu"))
    if not layers:
        raise InputError(f"name the layer(s) of {name} to use, e.g. --layers 6")
    return SSLEncoder.from_pretrained(name, layers, **options)
