"""`speechtok.load`: a tokenizer from a saved directory (dispatched on the `type` in its
`tokenizer.json`, read once), a preset name, or a codec on disk. The tokenizer it returns keeps
its `LoadArgs`, so another process (a Ray worker) can load the same one."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import InputError, NotFoundError, UnknownNameError
from . import presets
from .base import CONFIG_NAME, TokenizerBase, read_config
from .codec import CodecTokenizer
from .semantic import Tokenizer

# tokenizer.json's `type` -> how to rebuild it: from_dict(config, directory, **options)
TOKENIZER_TYPES: dict[str, Callable[..., TokenizerBase]] = {
    "semantic": Tokenizer.from_dict,
    "codec": CodecTokenizer.from_dict,
}

_CODEC_ONLY = ("n_quantizers", "bandwidth", "window_seconds", "sample_rate")


@dataclass(frozen=True)
class LoadArgs:
    """The arguments of one `load` call: what another process needs to load the same tokenizer
    (from its own copy of the directory or its own hub cache; nothing is sent but these)."""

    name_or_path: str
    layers: tuple[int, ...] | None = None
    options: dict = field(default_factory=dict)

    def load(self, **overrides) -> TokenizerBase:
        """The tokenizer, with `overrides` of the options (e.g. another device)."""
        return load(self.name_or_path, self.layers, **{**self.options, **overrides})


def load(name_or_path: str | os.PathLike, layers: Sequence[int] | None = None, **options) -> TokenizerBase:
    """A tokenizer from a directory written by `save_pretrained`, a preset name (`speechtok
    presets`), or a codec: a local transformers DAC / EnCodec / Mimi directory or an original DAC
    checkpoint (`.pth`).

    `layers` picks layers of a multi-layer semantic preset (default: all it has). `options`:
    device ("cpu", "cuda"), dtype ("float32", "bfloat16", "float16"); semantic: chunk_seconds;
    codecs: n_quantizers or bandwidth (kbps), window_seconds, sample_rate (checkpoints without it).
    """
    tok = _load(name_or_path, layers, options)
    where = Path(name_or_path)  # a local path, absolute: another process may run elsewhere
    tok.load_args = LoadArgs(str(where.resolve()) if where.exists() else str(name_or_path),
                             None if layers is None else tuple(layers), dict(options))
    return tok


def _load(name_or_path: str | os.PathLike, layers: Sequence[int] | None, options: dict) -> TokenizerBase:
    path = Path(name_or_path)
    name = str(name_or_path)
    if (path / CONFIG_NAME).exists():
        config = read_config(path)
        build = TOKENIZER_TYPES.get(config["type"])
        if build is None:
            raise UnknownNameError(f"{path / CONFIG_NAME}: unknown tokenizer type {config['type']!r} "
                                   f"(this speechtok knows {', '.join(TOKENIZER_TYPES)})")
        _no_layers(layers)
        if config["type"] == "semantic":
            options = _semantic_options(options)
        return build(config, path, **options)
    if path.is_file() or (path / "config.json").exists() or (name in presets.CODEC_PRESETS and not path.exists()):
        _no_layers(layers)  # a codec on disk wins over a preset of the same name
        return CodecTokenizer.from_pretrained(path if path.exists() else presets.CODEC_PRESETS[name].model, **options)
    if name in presets.PRESETS:
        return Tokenizer.from_preset(name, layers, **_semantic_options(options))
    if path.exists():
        raise NotFoundError(f"{path}: no {CONFIG_NAME}; not a speechtok tokenizer directory")
    raise UnknownNameError(f"{name!r} is neither a tokenizer directory nor a preset; presets: "
                           f"{', '.join([*presets.PRESETS, *presets.CODEC_PRESETS])}")


def _no_layers(layers) -> None:
    if layers:
        raise InputError("layers= applies to multi-layer semantic presets; this tokenizer has its streams fixed")


def _semantic_options(options: dict) -> dict:
    given = [k for k in _CODEC_ONLY if options.get(k) is not None]
    if given:
        raise InputError(f"{', '.join(given)} apply to codec tokenizers, not to k-means ones")
    return {k: v for k, v in options.items() if k not in _CODEC_ONLY}
