"""The tokenizer contract: audio -> Units (`encode`), Units -> audio where there is a decoder
(`decode`), saved as a directory with `tokenizer.json` (`save_pretrained` / `speechtok.load`).

Every tokenizer reads audio through its front end (`AudioFrontEnd`: an SSL or MFCC encoder, or a
codec model), which turns a file or array into the prepared float32 wave it encodes; callers use
`tokenizer.read(...)` and never reach into the front end.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Iterable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from ..audio import AudioSource, Reading
from ..errors import FormatError, NotFoundError
from ..units import Units
from ..version import __version__

CONFIG_NAME = "tokenizer.json"
TYPE_KEY = "type"  # the discriminator of every saved speechtok object's dict


@runtime_checkable
class AudioFrontEnd(Protocol):
    """What reads audio for a tokenizer: SSL / MFCC encoders and codec models all have it."""

    sample_rate: int
    frame_rate: float  # frames of features (or codes) per second
    device: torch.device
    reading: Reading  # how `load` reads, without the model (picklable: read actors build only this)

    def load(self, source: AudioSource, sample_rate: int | None = None, start: float | None = None,
             duration: float | None = None) -> np.ndarray:
        """`source` (a segment of it, in seconds) as the prepared float32 mono wave this front end
        encodes, or raise AudioError naming it."""

    def to_dict(self) -> dict:
        """What identifies the front end (model, revision, options), with a `type` key."""


class TokenizerBase:
    """What every tokenizer offers. Subclasses set `front_end` and `batch_seconds`, provide
    `streams` and `vocab_sizes`, and implement `encode_waves`, `to_dict`
    and `save_pretrained`; those with a decoder override `has_decoder` and `decode_batch`."""

    front_end: AudioFrontEnd
    batch_seconds: float
    has_decoder = False
    source: str | None = None  # the directory or preset it was loaded from, if any
    load_args = None  # `registry.LoadArgs` when it came from `speechtok.load`: how to load it again

    def read(self, source: AudioSource, sample_rate: int | None = None, start: float | None = None,
             duration: float | None = None) -> np.ndarray:
        """The prepared wave `encode_waves` takes (reading and encoding can then happen in
        different places, e.g. CPU workers and a GPU). Raises AudioError naming a bad input."""
        return self.front_end.load(source, sample_rate, start=start, duration=duration)

    @property
    def reading(self) -> Reading:
        """`read` without the tokenizer: picklable, model-free (what a process that only reads needs)."""
        return self.front_end.reading

    @property
    def device(self) -> torch.device:
        return self.front_end.device

    @property
    def sample_rate(self) -> int:
        """The rate `read` resamples audio to."""
        return self.front_end.sample_rate

    @property
    def frame_rate(self) -> float:
        """Frames of codes per second (before deduplication)."""
        return self.front_end.frame_rate

    def encode(self, source: AudioSource, sample_rate: int | None = None) -> Units:
        """Units of one file path or array (`sample_rate` required for arrays)."""
        return self.encode_batch([source], sample_rate)[0]

    def encode_batch(
        self,
        sources: Sequence[AudioSource],
        sample_rate: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[Units]:
        """Units of each input, encoded in batches. Each result equals what `encode` gives for
        that input alone. Raises AudioError naming the first bad input."""
        return self.encode_waves([self.read(s, sample_rate) for s in sources], progress)

    def encode_waves(self, waves: Sequence[np.ndarray], progress: Callable[[int], None] | None = None) -> list[Units]:
        """Units of waves from `read`. `progress(samples)` is called after each batch."""
        raise NotImplementedError

    @property
    def can_stream(self) -> bool:
        """Whether `encode_stream` can encode a file as it is read (for files too long to hold)."""
        return False

    def encode_stream(self, pieces: Iterable[np.ndarray]) -> Units:
        """Units of one prepared wave given in consecutive pieces (`audio.stream_file`), equal to
        `encode_waves` of the whole wave; memory holds a block, not the wave (`can_stream`)."""
        raise NotImplementedError(f"{type(self).__name__} encodes whole utterances only")

    @property
    def bitrate(self) -> float:
        """Bits per second of the codes, log2(K) per stream per frame (before deduplication)."""
        return self.frame_rate * sum(math.log2(k) for k in self.vocab_sizes)

    @property
    def decode_sample_rate(self) -> int:
        """The rate of the audio `decode` gives."""
        return self.sample_rate

    def decode(self, units: Units) -> np.ndarray:
        """float32 mono audio at `decode_sample_rate` from `units`."""
        return self.decode_batch([units])[0]

    def decode_batch(self, units: Sequence[Units], progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} has no decoder: it cannot turn units back into audio")

    def to_dict(self) -> dict:
        """What makes this tokenizer's output, with a `type` key (what `load` dispatches on)."""
        raise NotImplementedError

    def config(self) -> dict:  # the name before `to_dict`
        return self.to_dict()

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        raise NotImplementedError


def write_config(directory: Path, config: dict) -> None:
    """`tokenizer.json`, written last and atomically: a directory with one is complete."""
    tmp = directory / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps({"speechtok_version": __version__, **config}, indent=2) + "\n")
    os.replace(tmp, directory / CONFIG_NAME)


def read_config(directory: str | os.PathLike) -> dict:
    """The `tokenizer.json` of a directory, checked to be one (errors name the file). Configs
    written before the `type` key was shared by every saved object say `kind`."""
    path = Path(directory) / CONFIG_NAME
    if not path.exists():
        raise NotFoundError(f"{directory}: no {CONFIG_NAME}; not a speechtok tokenizer directory")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FormatError(f"{path}: not valid JSON ({error}); the tokenizer directory is damaged") from None
    if not isinstance(config, dict):
        raise FormatError(f"{path}: expected a JSON object, found {type(config).__name__}")
    if TYPE_KEY not in config and "kind" in config:
        config[TYPE_KEY] = config.pop("kind")
    if TYPE_KEY not in config:
        raise FormatError(f"{path}: no {TYPE_KEY!r} key; not a speechtok tokenizer config")
    return config
