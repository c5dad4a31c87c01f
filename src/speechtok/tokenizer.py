"""Tokenizers: audio -> Units, and (where there is a decoder) back; saved as JSON + safetensors.

    tok = speechtok.load("hubert-base-ls960-L9-km500")      # a preset, or a directory
    units = tok.encode("speech.wav")                        # -> Units
    tok.save_pretrained("my_tokenizer")

Two kinds share one interface (`TokenizerBase`): `Tokenizer`, an SSL/MFCC encoder plus one k-means
per stream (semantic units), and `codecs.CodecTokenizer` (acoustic tokens, with a decoder).
A semantic tokenizer directory holds `tokenizer.json` (the encoder reference: hub id or path, and
its options; one entry per stream) and `kmeans_<stream>.safetensors` + `.json` per stream.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from . import __version__, presets
from .audio import AudioSource
from .encoders import Encoder, SSLEncoder, from_config
from .encoders.base import default_batch_seconds
from .quantizers import KMeans
from .units import Units, layer_of

CONFIG_NAME = "tokenizer.json"


class TokenizerBase:
    """What every tokenizer offers. Subclasses set `encoder` (reads audio: `encoder.load`),
    `batch_seconds`, `streams`, `vocab_sizes`, `sample_rate`, `frame_rate`, and implement
    `encode_waves`, `config` and `save_pretrained`; those with a decoder override `decode_batch`."""

    encoder: Encoder  # or codecs.CodecAudio: what is used of it is load(), sample_rate, device, config()
    batch_seconds: float
    has_decoder = False

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
        return self.encode_waves([self.encoder.load(s, sample_rate) for s in sources], progress)

    def encode_waves(self, waves: Sequence[np.ndarray], progress: Callable[[int], None] | None = None) -> list[Units]:
        """Units of waves already read with `tokenizer.encoder.load` (reading and encoding can
        then happen in different places, e.g. CPU workers and a GPU). `progress(samples)` is
        called after each batch."""
        raise NotImplementedError

    @property
    def decode_sample_rate(self) -> int:
        """The rate of the audio `decode` gives."""
        return self.sample_rate

    def decode(self, units: Units) -> np.ndarray:
        """float32 mono audio at `decode_sample_rate` from `units`."""
        return self.decode_batch([units])[0]

    def decode_batch(self, units: Sequence[Units], progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} has no decoder: it cannot turn units back into audio")

    def config(self) -> dict:
        raise NotImplementedError


def write_config(directory: Path, config: dict) -> None:
    """`tokenizer.json`, written last and atomically: a directory with one is complete."""
    tmp = directory / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps({"speechtok_version": __version__, **config}, indent=2) + "\n")
    os.replace(tmp, directory / CONFIG_NAME)


class Tokenizer(TokenizerBase):
    """Audio -> Units through `encoder` and one quantizer per stream (`{"L9": KMeans, ...}`)."""

    def __init__(
        self,
        encoder: Encoder,
        quantizers: Mapping[str, KMeans],
        batch_seconds: float | None = None,
        vocoder=None,
    ):
        missing = [s for s in quantizers if s not in encoder.streams]
        if missing:
            raise ValueError(f"streams {missing} are not produced by the encoder (it gives {encoder.streams})")
        if not quantizers:
            raise ValueError("a tokenizer needs at least one quantizer")
        self.encoder = encoder
        self.quantizers = dict(quantizers)
        # a runtime choice, not part of the tokenizer: not saved; None = the device's default
        self.batch_seconds = default_batch_seconds(encoder.device) if batch_seconds is None else batch_seconds
        self._codebooks = tuple(q.centroids.numpy() for q in self.quantizers.values())
        self._vocoder = vocoder  # a vocoders.UnitVocoder, or None: then there is no `decode`
        self._vocoder_factory: Callable[[], object] | None = None  # presets: fetched on first decode
        self.source: str | None = None  # the directory or preset it was loaded from, if any

    @property
    def vocoder(self):
        if self._vocoder is None and self._vocoder_factory is not None:
            self._vocoder = self._vocoder_factory()
        return self._vocoder

    @property
    def has_decoder(self) -> bool:
        return self._vocoder is not None or self._vocoder_factory is not None

    @property
    def decode_sample_rate(self) -> int:
        return self.vocoder.sample_rate if self.has_decoder else self.sample_rate

    def decode_batch(self, units: Sequence[Units], progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """Audio of each Units through the unit vocoder (SpeechBrain's hifigan-*-k1000 from `import
        speechbrain`): `len(units) * hop` samples at the vocoder's rate, every stream in the column
        of its layer."""
        if not self.has_decoder:
            return super().decode_batch(units, progress)
        return self.vocoder.decode_batch(units, progress)

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self.quantizers)

    @property
    def vocab_sizes(self) -> tuple[int, ...]:
        return tuple(q.k for q in self.quantizers.values())

    @property
    def sample_rate(self) -> int:
        return self.encoder.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.encoder.frame_rate

    def __repr__(self) -> str:
        desc = ", ".join(f"{s}: K={q.k}" for s, q in self.quantizers.items())
        return f"Tokenizer({self.encoder.config().get('model') or 'mfcc'}; {desc}; {self.frame_rate:g} Hz)"

    def encode_waves(self, waves: Sequence[np.ndarray], progress: Callable[[int], None] | None = None) -> list[Units]:
        per_wave = self.encoder.map_batches(waves, self._quantize, self.batch_seconds, progress)
        empty = np.zeros((0, len(self.quantizers)), dtype=np.int64)
        return [
            Units(
                codes=np.concatenate(chunks) if chunks else empty,
                streams=self.streams,
                frame_rate=self.frame_rate,
                vocab_sizes=self.vocab_sizes,
                num_samples=len(wave),
                sample_rate=self.sample_rate,
                codebooks=self._codebooks,
            )
            for wave, chunks in zip(waves, per_wave)
        ]

    def _quantize(self, features: dict[str, torch.Tensor]) -> np.ndarray:
        ids = [q.assign(features[s]) for s, q in self.quantizers.items()]
        return torch.stack(ids, dim=1).cpu().numpy()

    def config(self) -> dict:
        """What makes this tokenizer's output: the encoder's config, and per stream its K and a
        digest of its centroids (so two k-means of one name are told apart)."""
        streams = [
            {"name": s, "k": q.k, "sha256": hashlib.sha256(q.centroids.numpy().tobytes()).hexdigest()}
            for s, q in self.quantizers.items()
        ]
        return {"kind": "semantic", "encoder": self.encoder.config(), "streams": streams}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write `tokenizer.json` and the k-means files; the encoder is referenced, not copied."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config()
        for entry in config["streams"]:
            entry["file"] = self.quantizers[entry["name"]].save(directory / f"kmeans_{entry['name']}").name
        if self.has_decoder:
            self.vocoder.save(directory)
            config["vocoder"] = "vocoder.json"
        write_config(directory, config)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **options) -> Tokenizer:
        """Load a directory written by `save_pretrained`. `options`: device, dtype, chunk_seconds."""
        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.exists():
            raise FileNotFoundError(f"{directory}: no {CONFIG_NAME}; not a speechtok tokenizer directory")
        config = json.loads(config_path.read_text())
        names = [s["name"] for s in config["streams"]]
        layers = [layer_of(n) for n in names if n.startswith("L")]
        encoder = from_config(config["encoder"], layers, base_dir=directory, **options)
        quantizers = {s["name"]: KMeans.load(directory / s["file"]) for s in config["streams"]}
        vocoder = None
        if config.get("vocoder"):
            from .vocoders import UnitVocoder

            vocoder = UnitVocoder.load(directory, device=options.get("device", "cpu"))
        tok = cls(encoder, quantizers, vocoder=vocoder)
        tok.source = str(directory.resolve())
        return tok

    @classmethod
    def from_preset(cls, name: str, layers: Sequence[int] | None = None, **options) -> Tokenizer:
        """A published tokenizer by name (see `speechtok.presets.PRESETS`), fetched when online."""
        preset = presets.get(name)
        chosen = presets.layers_for(preset, layers)
        quantizers = {f"L{n}": KMeans.load(preset.fetch(n)) for n in chosen}
        encoder = SSLEncoder.from_pretrained(preset.encoder, chosen, normalize=preset.normalize, **options)
        tok = cls(encoder, quantizers)
        tok.source = name
        if preset.vocoder:  # the unit HiFi-GAN of the same repo, fetched only when decoding
            from .vocoders import UnitVocoder

            tok._vocoder_factory = lambda: UnitVocoder.from_speechbrain(
                preset.vocoder, layers=preset.layers, device=options.get("device", "cpu"))
        return tok


def load(name_or_path: str | os.PathLike, layers: Sequence[int] | None = None, **options) -> TokenizerBase:
    """A tokenizer from a directory written by `save_pretrained`, a preset name (`speechtok
    presets`), or a codec: a local transformers DAC / EnCodec / Mimi directory or an original DAC
    checkpoint (`.pth`).

    `layers` picks layers of a multi-layer semantic preset (default: all it has). `options`:
    device ("cpu", "cuda"), dtype ("float32", "bfloat16", "float16"); semantic: chunk_seconds;
    codecs: n_quantizers or bandwidth (kbps), window_seconds, sample_rate (checkpoints without it).
    """
    from .codecs import CodecTokenizer

    path = Path(name_or_path)
    name = str(name_or_path)
    saved = (path / CONFIG_NAME).exists()
    is_codec = (json.loads((path / CONFIG_NAME).read_text()).get("kind") == "codec" if saved
                else path.is_file() or (path / "config.json").exists() or name in presets.CODEC_PRESETS)
    if layers and (saved or is_codec):
        raise ValueError("layers= applies to multi-layer semantic presets; this tokenizer has its streams fixed")
    if is_codec:  # a codec on disk wins over a preset of the same name
        source = path if saved or path.exists() else presets.CODEC_PRESETS[name].model
        return CodecTokenizer.from_pretrained(source, **options)
    if saved:
        return Tokenizer.from_pretrained(path, **_semantic_options(options))
    if name in presets.PRESETS:
        return Tokenizer.from_preset(name, layers, **_semantic_options(options))
    if path.exists():
        raise FileNotFoundError(f"{path}: no {CONFIG_NAME}; not a speechtok tokenizer directory")
    raise KeyError(f"{name!r} is neither a tokenizer directory nor a preset; presets: "
                   f"{', '.join([*presets.PRESETS, *presets.CODEC_PRESETS])}")


_CODEC_ONLY = ("n_quantizers", "bandwidth", "window_seconds", "sample_rate")


def _semantic_options(options: dict) -> dict:
    given = [k for k in _CODEC_ONLY if options.get(k) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} apply to codec tokenizers, not to k-means ones")
    return {k: v for k, v in options.items() if k not in _CODEC_ONLY}
