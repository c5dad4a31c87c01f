"""The semantic tokenizer: an SSL / MFCC encoder plus one k-means per stream (and, where one comes
with it, a unit vocoder to decode).

A semantic tokenizer directory holds `tokenizer.json` (the encoder reference: hub id or path and
its options; per stream its K, centroid digest and file) and `kmeans_<stream>.safetensors` +
`.json` per stream; with a vocoder, `vocoder.safetensors` + `vocoder.json`. Loading checks the
files against `tokenizer.json` (K, digest, finiteness, dims against the encoder) and refuses a
directory whose parts do not agree, naming the file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from ..encoders import Encoder, SSLEncoder, encoder_from_dict
from ..errors import FormatError, InputError
from ..quantizers import KMeans
from ..runtime.device import batch_seconds as default_or
from ..runtime.device import torch_threads
from ..units import Units, layer_of
from ..vocoders import UnitVocoder
from . import presets
from .base import TokenizerBase, read_config, write_config

TYPE = "semantic"


def centroid_digest(km: KMeans) -> str:
    return hashlib.sha256(km.centroids.numpy().tobytes()).hexdigest()


class Tokenizer(TokenizerBase):
    """Audio -> Units through `encoder` and one quantizer per stream (`{"L9": KMeans, ...}`)."""

    def __init__(
        self,
        encoder: Encoder,
        quantizers: Mapping[str, KMeans],
        batch_seconds: float | None = None,
        vocoder: UnitVocoder | None = None,
    ):
        missing = [s for s in quantizers if s not in encoder.streams]
        if missing:
            raise InputError(f"streams {missing} are not produced by the encoder (it gives {encoder.streams})")
        if not quantizers:
            raise InputError("a tokenizer needs at least one quantizer")
        dim = getattr(encoder, "feature_dim", None)  # known without a forward pass for our encoders
        for stream, km in quantizers.items():
            if dim is not None and km.dim != dim:
                raise InputError(f"k-means for {stream} has {km.dim}-dim centroids but the encoder's "
                                 f"{stream} features have {dim} dims: wrong encoder or layer?")
        self.encoder = encoder
        self.quantizers = dict(quantizers)
        # a runtime choice, not part of the tokenizer: not saved; None = the device's default
        self.batch_seconds = default_or(batch_seconds, encoder.device)
        self._codebooks = tuple(q.centroids.numpy() for q in self.quantizers.values())
        self._vocoder = vocoder  # None: there is no `decode`
        self._vocoder_factory: Callable[[], UnitVocoder] | None = None  # presets: fetched on first decode
        self.source: str | None = None

    @property
    def front_end(self) -> Encoder:
        return self.encoder

    @property
    def vocoder(self) -> UnitVocoder | None:
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

    def __repr__(self) -> str:
        desc = ", ".join(f"{s}: K={q.k}" for s, q in self.quantizers.items())
        return f"Tokenizer({self.encoder.to_dict().get('model') or 'mfcc'}; {desc}; {self.frame_rate:g} Hz)"

    def encode_waves(self, waves: Sequence[np.ndarray], progress: Callable[[int], None] | None = None) -> list[Units]:
        per_wave = self.encoder.map_batches(waves, self._quantize, self.batch_seconds, progress, rowwise=True)
        return [self._units(chunks, len(wave)) for wave, chunks in zip(waves, per_wave)]

    @property
    def can_stream(self) -> bool:
        return self.encoder.streaming and self.reading.streamable

    def encode_stream(self, pieces: Iterable[np.ndarray]) -> Units:
        if not self.can_stream:
            return super().encode_stream(pieces)
        samples = 0

        def counted() -> Iterator[np.ndarray]:
            nonlocal samples
            for piece in pieces:
                samples += len(piece)
                yield piece

        with torch_threads(self.encoder.cpu_threads, self.encoder.device):
            chunks = [self._quantize(block) for block in self.encoder.feature_blocks(counted())]
        return self._units(chunks, samples)

    def _units(self, chunks: list[np.ndarray], num_samples: int) -> Units:
        return Units(
            codes=np.concatenate(chunks) if chunks else np.zeros((0, len(self.quantizers)), dtype=np.int64),
            streams=self.streams,
            frame_rate=self.frame_rate,
            vocab_sizes=self.vocab_sizes,
            num_samples=num_samples,
            sample_rate=self.sample_rate,
            codebooks=self._codebooks,
        )

    def _quantize(self, features: dict[str, torch.Tensor]) -> np.ndarray:
        ids = [q.assign(features[s]) for s, q in self.quantizers.items()]
        return torch.stack(ids, dim=1).cpu().numpy()

    def to_dict(self) -> dict:
        """What makes this tokenizer's output: the encoder's dict, and per stream its K and a
        digest of its centroids (so two k-means of one name are told apart)."""
        streams = [{"name": s, "k": q.k, "sha256": centroid_digest(q)} for s, q in self.quantizers.items()]
        return {"type": TYPE, "encoder": self.encoder.to_dict(), "streams": streams}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write `tokenizer.json` and the k-means files; the encoder is referenced, not copied."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.to_dict()
        for entry in config["streams"]:
            entry["file"] = self.quantizers[entry["name"]].save_pretrained(directory / f"kmeans_{entry['name']}").name
        if self.has_decoder:
            self.vocoder.save_pretrained(directory)
            config["vocoder"] = "vocoder.json"
        write_config(directory, config)
        return directory

    @classmethod
    def from_dict(cls, config: dict, directory: str | os.PathLike, **options) -> Tokenizer:
        """Rebuild from `tokenizer.json`'s dict; the k-means files are read from `directory` and
        checked against it."""
        directory = Path(directory)
        streams = config.get("streams")
        if not isinstance(streams, list) or not streams or not isinstance(config.get("encoder"), dict):
            raise FormatError(f"{directory / 'tokenizer.json'}: no encoder or streams; the file is damaged")
        layers = [layer_of(s["name"]) for s in streams if s["name"].startswith("L")]
        quantizers = {s["name"]: _checked_kmeans(directory, s) for s in streams}
        encoder = encoder_from_dict(config["encoder"], layers, base_dir=directory, **options)
        vocoder = None
        if config.get("vocoder"):
            vocoder = UnitVocoder.from_pretrained(directory, device=options.get("device", "cpu"))
        try:
            tok = cls(encoder, quantizers, vocoder=vocoder)
        except InputError as error:
            raise FormatError(f"{directory}: {error}") from None
        tok.source = str(directory.resolve())
        return tok

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **options) -> Tokenizer:
        """Load a directory written by `save_pretrained`. `options`: device, dtype, chunk_seconds."""
        config = read_config(directory)
        if config["type"] != TYPE:
            raise FormatError(f"{directory}: a {config['type']!r} tokenizer, not a semantic one; use speechtok.load")
        return cls.from_dict(config, directory, **options)

    @classmethod
    def from_preset(cls, name: str, layers: Sequence[int] | None = None, **options) -> Tokenizer:
        """A published tokenizer by name (see `speechtok.tokenizer.presets.PRESETS`), fetched when
        online; offline, every file it lacks is listed."""
        preset = presets.get(name)
        chosen = presets.layers_for(preset, layers)
        files = presets.fetch_all(preset, chosen)
        quantizers = {f"L{n}": KMeans.from_pretrained(files[n]) for n in chosen}
        encoder = SSLEncoder.from_pretrained(preset.encoder, chosen, normalize=preset.normalize, **options)
        tok = cls(encoder, quantizers)
        tok.source = name
        if preset.vocoder:  # the unit HiFi-GAN of the same repo, fetched only when decoding
            tok._vocoder_factory = lambda: UnitVocoder.from_speechbrain(
                preset.vocoder, layers=preset.layers, device=options.get("device", "cpu"))
        return tok


def _checked_kmeans(directory: Path, entry: dict) -> KMeans:
    """A stream's k-means file, refused unless it is what tokenizer.json recorded."""
    name, path = entry.get("name"), directory / str(entry.get("file"))
    km = KMeans.from_pretrained(path)
    if "k" in entry and km.k != entry["k"]:
        raise FormatError(f"{path}: holds {km.k} centroids but tokenizer.json says K={entry['k']} for {name}; "
                          "the tokenizer directory is damaged or was edited")
    if entry.get("sha256") and centroid_digest(km) != entry["sha256"]:
        raise FormatError(f"{path}: its centroids do not match the sha256 in tokenizer.json for {name}; "
                          "the file was changed after the tokenizer was saved")
    return km
