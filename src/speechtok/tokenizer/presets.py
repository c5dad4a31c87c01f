"""Published tokenizers by name. Semantic: which encoder, which layers, which k-means files.
Codecs: which transformers model (`CODEC_PRESETS`).

The k-means files are the ones the reference tools publish and users already have:
- fairseq HuBERT: hubert_base_ls960_L9_km500.bin (layer 9, K=500), labels of HuBERT iteration 2;
- textlesslib / GSLM: HuBERT-base layer 6 with K = 50, 100, 200;
- SpeechBrain: kmeans/LibriSpeech_{encoder}_k1000_L{n}.pt in the hifigan-*-k1000-LibriTTS repos,
  for layers 1, 3, 7, 12, 18, 23 of the large WavLM / HuBERT / wav2vec2 models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import InputError, UnknownNameError
from ..hub import MissingFileError, hub_file, hub_model_missing, missing_files_error, url_file

SPEECHBRAIN_LAYERS = (1, 3, 7, 12, 18, 23)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    encoder: str  # hub id of the SSL model
    layers: tuple[int, ...]  # layers with published k-means
    k: int
    fetch: Callable[[int], Path]  # layer -> local path of its k-means file
    normalize: bool | None = None  # None: follow the model's feature-extractor config
    vocoder: str | None = None  # hub repo of a unit vocoder for these units (SpeechBrain hifigan-*)


def _fairseq(url: str) -> Callable[[int], Path]:
    return lambda layer: url_file(url, "fairseq/" + url.split("dl.fbaipublicfiles.com/", 1)[1])


def _speechbrain(repo: str, encoder_name: str) -> Callable[[int], Path]:
    return lambda layer: hub_file(repo, f"kmeans/LibriSpeech_{encoder_name}_k1000_L{layer}.pt")


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "hubert-base-ls960-L9-km500",
            "fairseq HuBERT-base layer 9, K=500 (the labels HuBERT large/xlarge were trained on)",
            "facebook/hubert-base-ls960", (9,), 500,
            _fairseq("https://dl.fbaipublicfiles.com/hubert/hubert_base_ls960_L9_km500.bin"),
            normalize=False,  # fairseq's base task config: normalize=false
        ),
        *[
            Preset(
                f"gslm-hubert-base-L6-km{k}",
                f"textlesslib / GSLM HuBERT-base layer 6, K={k}",
                "facebook/hubert-base-ls960", (6,), k,
                _fairseq(f"https://dl.fbaipublicfiles.com/textless_nlp/gslm/hubert/km{k}/km.bin"),
                normalize=False,
            )
            for k in (50, 100, 200)
        ],
        *[
            Preset(
                f"speechbrain-{name}-k1000",
                f"SpeechBrain DiscreteSSL {model} k-means, K=1000, layers {list(SPEECHBRAIN_LAYERS)}",
                model, SPEECHBRAIN_LAYERS, 1000,
                _speechbrain(f"speechbrain/hifigan-{name}-k1000-LibriTTS", name),
                vocoder=f"speechbrain/hifigan-{name}-k1000-LibriTTS",
            )
            for name, model in [
                ("wavlm", "microsoft/wavlm-large"),
                ("hubert", "facebook/hubert-large-ll60k"),
                ("wav2vec2", "facebook/wav2vec2-large"),
            ]
        ],
    ]
}


@dataclass(frozen=True)
class CodecPreset:
    name: str
    model: str  # hub id of the transformers codec
    description: str


CODEC_PRESETS: dict[str, CodecPreset] = {
    p.name: p
    for p in [
        CodecPreset("dac-16khz", "descript/dac_16khz", "DAC 16 kHz: 12 codebooks x 1024 at 50 Hz (up to 6 kbps)"),
        CodecPreset("dac-24khz", "descript/dac_24khz", "DAC 24 kHz: 32 codebooks x 1024 at 75 Hz (up to 24 kbps)"),
        CodecPreset("dac-44khz", "descript/dac_44khz", "DAC 44.1 kHz: 9 codebooks x 1024 at 86.1 Hz (up to 7.75 kbps)"),
        CodecPreset("encodec-24khz", "facebook/encodec_24khz", "EnCodec 24 kHz: 32 codebooks x 1024 at 75 Hz (1.5-24 kbps)"),
        CodecPreset("mimi", "kyutai/mimi", "Mimi 24 kHz: 32 codebooks x 2048 at 12.5 Hz (q0 semantic)"),
    ]
}


def get(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownNameError(f"no preset named {name!r}; presets: {', '.join([*PRESETS, *CODEC_PRESETS])}") from None


def layers_for(preset: Preset, layers: Sequence[int] | None) -> tuple[int, ...]:
    """The layers named (default: every layer the preset has k-means for), checked."""
    chosen = tuple(layers) if layers else preset.layers
    for layer in chosen:
        if layer not in preset.layers:
            raise InputError(f"preset {preset.name} has k-means for layers {list(preset.layers)}, not {layer}")
    return chosen


def fetch_all(preset: Preset, layers: Sequence[int]) -> dict[int, Path]:
    """layer -> local k-means file, for every layer. When something is missing, one error lists
    every missing file - each k-means file and, offline, the SSL model if it is not in the HF
    cache - before anything is loaded, so one trip to a machine with internet fetches them all."""
    found, missing = {}, []
    for layer in layers:
        try:
            found[layer] = preset.fetch(layer)
        except MissingFileError as error:
            missing.append(error)
    model = hub_model_missing(preset.encoder)
    if model is not None:
        missing.append(model)
    if missing:
        raise missing_files_error(f"preset {preset.name}", missing)
    return found
