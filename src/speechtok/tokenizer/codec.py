"""CodecTokenizer: a neural codec as a tokenizer; `encode` -> Units with streams q0..q{n-1},
`decode` -> audio at the codec's rate, for audio of any length.

    tok = speechtok.load("dac-16khz", n_quantizers=8)      # or bandwidth=4.0 (kbps)
    units = tok.encode("speech.wav")                        # Units: [T, 8] codes at 50 Hz
    audio = tok.decode(units)                               # float32, 16 kHz, the input's length

Long audio is encoded and decoded in windows of `window_seconds` with context around each (see
`runtime/windows.py`): exact for DAC, and for EnCodec / Mimi (whose memory has no bound) a documented
approximation. Memory then depends on the window, not on the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..codecs import CodecError, CodecModel, load_codec
from ..runtime import windows
from ..runtime.device import batch_seconds as default_or
from ..units import Units
from .base import CONFIG_NAME, TokenizerBase, read_config, write_config

TYPE = "codec"

DEFAULT_WINDOW_SECONDS = 30.0
SAVED_MODEL_DIR = "codec"  # where save_pretrained puts a model converted from an original checkpoint


class CodecTokenizer(TokenizerBase):
    """Audio <-> the first `n_quantizers` codebooks of a codec's residual vector quantizer."""

    has_decoder = True

    def __init__(self, codec: CodecModel, n_quantizers: int | None = None, bandwidth: float | None = None,
                 window_seconds: float = DEFAULT_WINDOW_SECONDS, batch_seconds: float | None = None):
        self.codec = codec
        self.n_quantizers = codec.check_quantizers(n_quantizers, bandwidth)
        if window_seconds <= 0:
            raise CodecError(f"window_seconds must be positive, not {window_seconds}")
        self.window_seconds = float(window_seconds)
        # a runtime choice, not saved; None = the device's default
        self.batch_seconds = default_or(batch_seconds, codec.device)
        hop = codec.hop
        self._core_samples = max(1, round(window_seconds * codec.sample_rate / hop)) * hop
        self._core_frames = self._core_samples // hop

    @property
    def front_end(self) -> CodecModel:
        return self.codec

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(f"q{i}" for i in range(self.n_quantizers))

    @property
    def vocab_sizes(self) -> tuple[int, ...]:
        return (self.codec.codebook_size,) * self.n_quantizers

    @property
    def bandwidth(self) -> float:
        """kbps of the codes."""
        return self.codec.bandwidth_of(self.n_quantizers)

    def __repr__(self) -> str:
        return (f"CodecTokenizer({self.codec.source}; {self.n_quantizers} codebooks x {self.codec.codebook_size}; "
                f"{self.frame_rate:g} Hz; {self.bandwidth:g} kbps)")

    # --- audio -> codes ---------------------------------------------------------------------------

    def encode_waves(self, waves: Sequence[np.ndarray], progress: Callable[[int], None] | None = None) -> list[Units]:
        codec, hop = self.codec, self.codec.hop
        left = codec.encode_context
        right = 0 if codec.causal else codec.encode_context
        padded = [len(w) + codec.pad(len(w)) for w in waves]
        plans = [w for i, n in enumerate(padded) for w in windows.plan(i, n, self._core_samples, left, right)]

        def forward(batch: list[windows.Window]) -> list[np.ndarray]:
            audio = torch.from_numpy(np.stack([_slice(waves[w.item], w.start, w.stop) for w in batch]))
            codes = codec.encode(audio, self.n_quantizers).cpu().numpy()
            if progress is not None:
                progress(sum(min(w.core_stop, len(waves[w.item])) - w.core_start for w in batch))
            first = [w.core_offset // hop for w in batch]
            count = [codec.num_frames(w.core_stop) - w.core_start // hop for w in batch]
            return [c[:, f : f + n].T for c, f, n in zip(codes, first, count)]

        kept = windows.run(plans, len(waves), forward, self._batch_samples, equal_lengths=True)
        return [
            Units(codes=np.concatenate(parts), streams=self.streams, frame_rate=self.frame_rate,
                  vocab_sizes=self.vocab_sizes, num_samples=len(wave), sample_rate=self.sample_rate)
            for wave, parts in zip(waves, kept)
        ]

    # --- codes -> audio ---------------------------------------------------------------------------

    def decode_batch(self, units: Sequence[Units], progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """Audio of each Units (same batching rules as encoding: a result never depends on the
        others). Trimmed (or padded with zeros) to the encoded length where the Units know it."""
        codec, hop = self.codec, self.codec.hop
        codes = [self._check_units(u) for u in units]
        left = codec.decode_context
        right = 0 if codec.causal else codec.decode_context
        plans = [w for i, c in enumerate(codes) for w in windows.plan(i, len(c), self._core_frames, left, right)]

        def forward(batch: list[windows.Window]) -> list[np.ndarray]:
            audio = codec.decode(torch.from_numpy(np.stack([codes[w.item][w.start : w.stop].T for w in batch])))
            audio = audio.float().cpu().numpy()
            if progress is not None:
                progress(sum((w.core_stop - w.core_start) * hop for w in batch))
            kept = []
            for w, a in zip(batch, audio):
                first = w.core_offset * hop
                last = len(a) if w.core_stop == len(codes[w.item]) else first + (w.core_stop - w.core_start) * hop
                kept.append(a[first:last])
            return kept

        kept = windows.run(plans, len(units), forward, self._batch_samples // hop, equal_lengths=True)
        out = []
        for u, parts in zip(units, kept):
            audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
            if u.num_samples is not None:  # the decoder may give a few samples fewer (DAC: F*hop - 8)
                audio = np.pad(audio[: u.num_samples], (0, max(0, u.num_samples - len(audio))))
            out.append(audio.astype(np.float32, copy=False))
        return out

    def _check_units(self, units: Units) -> np.ndarray:
        n = len(units.streams)
        if units.streams != tuple(f"q{i}" for i in range(n)) or not self.codec.min_quantizers <= n <= self.codec.max_quantizers:
            raise CodecError(f"these units have streams {units.streams}; {self.codec.source} decodes q0..q<n-1> "
                             f"with n in {self.codec.min_quantizers}..{self.codec.max_quantizers}")
        if units.durations is not None:
            raise CodecError("deduplicated codec units cannot be decoded; decode the units as encoded")
        if abs(units.frame_rate - self.frame_rate) > 1e-6:
            raise CodecError(f"units at {units.frame_rate:g} Hz, but {self.codec.source} runs at {self.frame_rate:g} Hz")
        if len(units) and (units.codes.min() < 0 or units.codes.max() >= self.codec.codebook_size):
            raise CodecError(f"codes outside 0..{self.codec.codebook_size - 1}")
        return np.ascontiguousarray(units.codes)

    @property
    def _batch_samples(self) -> int:
        """Samples of audio per batch: `batch_seconds` of it (0: one window at a time)."""
        return int(self.batch_seconds * self.sample_rate)

    # --- saving and loading -----------------------------------------------------------------------

    def to_dict(self) -> dict:
        """What makes this tokenizer's output. Windowing changes EnCodec / Mimi codes (not DAC's),
        so the window is part of it."""
        return {"type": TYPE, "codec": self.codec.to_dict(), "n_quantizers": self.n_quantizers,
                "window_seconds": self.window_seconds}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write `tokenizer.json`. A hub or directory model is referenced; a model converted from an
        original checkpoint is saved alongside (`codec/`), so loading needs no conversion."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.to_dict()
        if Path(self.codec.source).is_file():
            self.codec.model.save_pretrained(directory / SAVED_MODEL_DIR)
            config["codec"] = {**config["codec"], "model": SAVED_MODEL_DIR, "converted_from": self.codec.source}
        write_config(directory, config)
        return directory

    @classmethod
    def from_dict(cls, config: dict, base_dir: str | os.PathLike | None = None, **options) -> CodecTokenizer:
        """Rebuild from `to_dict()`. `options`: device, dtype, batch_seconds, and n_quantizers /
        bandwidth / window_seconds to override what was saved."""
        _check_options(options)
        source = config["codec"]["model"]
        if base_dir is not None and not Path(source).is_absolute() and (Path(base_dir) / source).is_dir():
            source = str(Path(base_dir) / source)
        codec = load_codec(source, config["codec"].get("revision"), options.pop("device", "cpu"), options.pop("dtype", None))
        if options.get("n_quantizers") is None and options.get("bandwidth") is None:
            options["n_quantizers"] = config.get("n_quantizers")
        if options.get("window_seconds") is None:
            options["window_seconds"] = config.get("window_seconds", DEFAULT_WINDOW_SECONDS)
        return cls(codec, **options)

    from_config = from_dict  # the name before to_dict / from_dict

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, **options) -> CodecTokenizer:
        """A tokenizer directory written by `save_pretrained`, or a codec itself: hub id, local
        transformers directory, Descript `.pth` / SpeechBrain DAC checkpoint (`sample_rate=` when
        the file does not say it)."""
        path = Path(source)
        if (path / CONFIG_NAME).exists():
            return cls.from_dict(read_config(path), base_dir=path, **options)
        _check_options(options)
        codec = load_codec(str(source), options.pop("revision", None), options.pop("device", "cpu"),
                           options.pop("dtype", None), sample_rate=options.pop("sample_rate", None))
        if options.get("window_seconds") is None:
            options["window_seconds"] = DEFAULT_WINDOW_SECONDS
        return cls(codec, **options)


_OPTIONS = {"device", "dtype", "revision", "sample_rate", "n_quantizers", "bandwidth", "window_seconds", "batch_seconds"}


def _check_options(options: dict) -> None:
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise CodecError(f"{', '.join(unknown)}: not options of a codec tokenizer (it takes {', '.join(sorted(_OPTIONS))})")


def _slice(wave: np.ndarray, start: int, stop: int) -> np.ndarray:
    """wave[start:stop], with zeros past its end (DAC's padding to a whole frame)."""
    piece = wave[start:stop]
    if len(piece) < stop - start:
        piece = np.pad(piece, (0, stop - start - len(piece)))
    return piece.astype(np.float32, copy=False)

