"""UnitVocoder: Units -> audio through a unit HiFi-GAN, on any device, batched, any length.

    voc = UnitVocoder.from_speechbrain("speechbrain/hifigan-wavlm-k1000-LibriTTS")  # or a local repo
    audio = voc.decode(units)            # float32, 16 kHz, exactly len(units) * 320 samples

Which column a stream goes to is decided by its layer, never by its position among the streams
present: the vocoder's input is `Units.vocoder_tokens(layers)` (token + i*K + 1 in the column i of
the vocoder's layer list; columns of absent layers are 0, the dropped-layer id the model was trained
with). Long sequences are decoded in windows with the generator's receptive field as context on
both sides, so windowed output equals whole output to float rounding; batches hold windows of one
length only, so a sequence's audio never depends on its batch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import FormatError, InputError, NotFoundError
from ..readers import reader
from ..runtime import windows
from ..runtime.device import batch_seconds as default_or
from ..runtime.device import resolve_device
from ..units import Units
from .hifigan import HifiGANConfig, UnitHifiGAN

CONFIG_FILE = "vocoder.json"
WEIGHTS_FILE = "vocoder.safetensors"
DEFAULT_WINDOW_SECONDS = 30.0


TYPE = "unit-hifigan"


class VocoderError(InputError):
    """Units this vocoder cannot decode, or a vocoder that does not fit its description."""


class UnitVocoder:
    """A unit HiFi-GAN with what it needs to read Units: the SSL layer of each codebook column
    (`layers`; None for a single-stream vocoder taking raw ids) and K per layer."""

    def __init__(self, model: UnitHifiGAN, layers: Sequence[int] | None, k: int, sample_rate: int = 16000,
                 device: str | torch.device = "cpu", window_seconds: float = DEFAULT_WINDOW_SECONDS,
                 batch_seconds: float | None = None, source: str | None = None):
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.config: HifiGANConfig = model.config
        self.layers = tuple(layers) if layers is not None else None
        self.k = int(k)
        expected = len(self.layers) * self.k + 1 if self.layers is not None else None
        if expected is not None and expected != self.config.vocab_size:
            raise VocoderError(f"a vocoder for layers {list(self.layers)} with K={self.k} has "
                               f"{expected} ids, but its embedding has {self.config.vocab_size}")
        self.sample_rate = int(sample_rate)
        self.hop = self.config.hop
        self.window_frames = max(1, round(window_seconds * self.sample_rate / self.hop))
        self.context = model.reach()
        self.batch_seconds = default_or(batch_seconds, self.device)
        self.source = source

    def __repr__(self) -> str:
        layers = f"layers {list(self.layers)}, " if self.layers else ""
        return f"UnitVocoder({self.source or 'unit HiFi-GAN'}; {layers}K={self.k}; {self.sample_rate} Hz, hop {self.hop})"

    # --- Units -> model input ---------------------------------------------------------------------

    def ids(self, units: Units) -> np.ndarray:
        """[T, C] model input of `units` (durations, if stored, expanded to frames)."""
        if set(units.vocab_sizes) != {self.k}:
            raise VocoderError(f"the vocoder takes K={self.k} units; these have K={list(units.vocab_sizes)}")
        if self.layers is not None:
            ids = units.vocoder_tokens(self.layers)
        else:
            if len(units.streams) != 1:
                raise VocoderError(f"this vocoder takes one stream; these units have {units.streams}")
            ids = units.codes[:, :1]
        if units.durations is not None:
            ids = np.repeat(ids, units.durations, axis=0)
        return ids

    # --- decoding ---------------------------------------------------------------------------------

    def decode(self, units: Units, speaker: int | None = None, predict_durations: bool = False) -> np.ndarray:
        return self.decode_batch([units], speaker=speaker, predict_durations=predict_durations)[0]

    def decode_batch(self, units: Sequence[Units], progress: Callable[[int], None] | None = None,
                     speaker: int | None = None, predict_durations: bool = False) -> list[np.ndarray]:
        """float32 audio of each Units, frames * hop samples (as SpeechBrain's and fairseq's
        inference give). Deduplicated units are expanded by their stored durations, or, with
        `predict_durations`, by the vocoder's duration predictor (fairseq's `dur_prediction`).
        `speaker`: the speaker id of a multi-speaker vocoder."""
        sequences = []
        for u in units:
            ids = self.ids(u)
            if predict_durations:
                if u.durations is not None:
                    raise VocoderError("these units carry durations; predict_durations is for units without them")
                ids = np.repeat(ids, self.predicted_durations(ids), axis=0)
            sequences.append(ids)
        return self.decode_ids(sequences, progress, speaker)

    @torch.inference_mode()
    def predicted_durations(self, ids: np.ndarray) -> np.ndarray:
        """Frames per unit from the duration predictor (over the whole sequence: it is cheap)."""
        if not self.config.duration_predictor:
            raise VocoderError(f"{self.source or 'this vocoder'} has no duration predictor; give units with durations")
        return self.model.predict_durations(torch.from_numpy(ids)[None].to(self.device))[0].cpu().numpy()

    @torch.inference_mode()
    def decode_ids(self, sequences: Sequence[np.ndarray], progress: Callable[[int], None] | None = None,
                   speaker: int | None = None) -> list[np.ndarray]:
        """Audio of [T, C] id sequences, in windows of equal length per batch."""
        hop = self.hop
        plans = [w for i, s in enumerate(sequences)
                 for w in windows.plan(i, len(s), self.window_frames, self.context, self.context)]

        def forward(batch: list[windows.Window]) -> list[np.ndarray]:
            ids = torch.from_numpy(np.stack([sequences[w.item][w.start : w.stop] for w in batch])).to(self.device)
            audio = self.model(ids, speaker).float().cpu().numpy()
            if progress is not None:
                progress(sum((w.core_stop - w.core_start) * hop for w in batch))
            return [a[w.core_offset * hop : (w.core_offset + w.core_stop - w.core_start) * hop]
                    for w, a in zip(batch, audio)]

        budget = int(self.batch_seconds * self.sample_rate) // hop
        kept = windows.run(plans, len(sequences), forward, budget, equal_lengths=True)
        return [np.concatenate(parts) if parts else np.zeros(0, np.float32) for parts in kept]

    # --- saving and loading -----------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"type": TYPE, "generator": self.config.to_dict(),
                "layers": list(self.layers) if self.layers is not None else None, "k": self.k,
                "sample_rate": self.sample_rate, "source": self.source}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """`vocoder.safetensors` (plain weights) + `vocoder.json` (how to build and feed it)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))
        (directory / CONFIG_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **options) -> UnitVocoder:
        """A vocoder written by `save_pretrained` (e.g. inside a tokenizer directory)."""
        directory = Path(directory)
        if not (directory / CONFIG_FILE).exists():
            raise NotFoundError(f"{directory}: no {CONFIG_FILE}; not a saved speechtok vocoder")
        try:
            config = json.loads((directory / CONFIG_FILE).read_text())
            model = UnitHifiGAN(HifiGANConfig(**config["generator"]))
            model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        except (json.JSONDecodeError, KeyError, TypeError, RuntimeError, OSError) as error:
            raise FormatError(f"{directory / CONFIG_FILE}: a damaged or mismatched vocoder ({type(error).__name__}: "
                              f"{error})") from None
        return cls(model, config["layers"], config["k"], config["sample_rate"], source=config.get("source"), **options)

    save = save_pretrained  # the names before save_pretrained / from_pretrained / to_dict
    load = from_pretrained
    config_dict = to_dict

    @classmethod
    def from_fairseq(cls, checkpoint: str | os.PathLike, config: str | os.PathLike | None = None,
                     **options) -> UnitVocoder:
        """A fairseq / textlesslib CodeHiFiGAN: the checkpoint (`generator` state dict) and its
        JSON config (default: config.json beside it). It takes raw unit ids, one stream."""
        model, cfg = reader("fairseq-vocoder")(checkpoint, config)
        return cls(model, None, model.config.vocab_size, int(cfg.get("sampling_rate", 16000)),
                   source=str(checkpoint), **options)

    @classmethod
    def from_speechbrain(cls, source: str | os.PathLike, layers: Sequence[int] | None = None,
                         **options) -> UnitVocoder:
        """A SpeechBrain unit HiFi-GAN repo (local directory or hub id): hyperparams.yaml +
        generator.ckpt. `layers` overrides the layer list the repo declares."""
        model, hparams, declared = reader("speechbrain-vocoder")(source)
        layers = tuple(layers) if layers else declared
        if not layers:
            raise VocoderError(f"{source}: cannot tell which SSL layers the vocoder's columns are; pass layers=")
        k, rest = divmod(model.config.vocab_size - 1, len(layers))
        if rest:
            raise VocoderError(f"{source}: vocab_size {model.config.vocab_size} is not {len(layers)} layers x K + 1")
        sample_rate = hparams.get("sample_rate", 16000)
        return cls(model, layers, k, sample_rate if isinstance(sample_rate, int) else 16000,
                   source=str(source), **options)
