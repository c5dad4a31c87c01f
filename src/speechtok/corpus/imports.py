"""`speechtok import`: k-means other tools wrote, made into a speechtok tokenizer directory.

- a single k-means file (scikit-learn joblib / pickle, read through the allow-list unpickler, or a
  centroid .npy) for one layer of an encoder;
- a SpeechBrain DiscreteSSL repository (local directory or hub id): every
  `kmeans/<name>_L<layer>.pt` it holds, one stream per layer.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from ..encoders import Encoder, MFCCEncoder, SSLEncoder
from ..quantizers import KMeans
from ..tokenizer import Tokenizer

_SPEECHBRAIN_KMEANS = re.compile(r"_L(\d+)\.pt$")


def build_encoder(name: str, layers: Sequence[int], **options) -> Encoder:
    """`mfcc`, or an SSL model (hub id or local directory) truncated to `layers`."""
    if name == "mfcc":
        return MFCCEncoder(device=options.get("device", "cpu"))
    if not layers:
        raise ValueError(f"name the layer(s) of {name} to use, e.g. --layer 6")
    return SSLEncoder.from_pretrained(name, layers, **options)


def check_dims(encoder: Encoder, quantizers: dict[str, KMeans]) -> None:
    from .extract import feature_dims

    dims = feature_dims(encoder)
    for stream, km in quantizers.items():
        if dims[stream] != km.dim:
            raise ValueError(f"k-means for {stream} has {km.dim}-dim centroids but the encoder's "
                             f"{stream} features have {dims[stream]} dims: wrong encoder or layer?")


def import_kmeans(path: str | os.PathLike, encoder: str, layer: int | None, out: str | os.PathLike,
                  vocoder: str | os.PathLike | None = None, vocoder_config: str | os.PathLike | None = None,
                  **options) -> Tokenizer:
    """One k-means file -> a tokenizer directory; with `vocoder`, a fairseq / textlesslib
    CodeHiFiGAN checkpoint for these units goes with it."""
    km = KMeans.load(path)
    enc = build_encoder(encoder, [] if layer is None else [layer], **options)
    stream = "mfcc" if encoder == "mfcc" else f"L{layer}"
    quantizers = {stream: km}
    check_dims(enc, quantizers)
    unit_vocoder = None
    if vocoder is not None:
        from ..vocoders import UnitVocoder

        unit_vocoder = UnitVocoder.from_fairseq(vocoder, vocoder_config)
        if unit_vocoder.k != km.k:
            raise ValueError(f"{vocoder} takes {unit_vocoder.k} units, but {path} has K={km.k}")
    tok = Tokenizer(enc, quantizers, vocoder=unit_vocoder)
    tok.save_pretrained(out)
    return tok


def speechbrain_kmeans_files(source: str | os.PathLike) -> dict[int, Path]:
    """layer -> k-means file of a SpeechBrain repo (local directory, or hub id fetched/cached)."""
    directory = Path(source)
    if not directory.is_dir():
        from huggingface_hub import snapshot_download

        try:
            directory = Path(snapshot_download(str(source), allow_patterns=["kmeans/*"]))
        except Exception as error:  # offline, unknown repo: say what was tried
            raise FileNotFoundError(f"{source}: not a local directory, and the hub repo could not be "
                                    f"fetched ({type(error).__name__}: {error})") from None
    files = {}
    for path in sorted((directory / "kmeans").glob("*.pt")):
        match = _SPEECHBRAIN_KMEANS.search(path.name)
        if match:
            files[int(match.group(1))] = path
    if not files:
        raise FileNotFoundError(f"{source}: no kmeans/<name>_L<layer>.pt files (a SpeechBrain "
                                "DiscreteSSL / unit-HiFi-GAN repo has them)")
    return files


def import_speechbrain(source: str | os.PathLike, encoder: str, out: str | os.PathLike,
                       layers: Sequence[int] | None = None, **options) -> Tokenizer:
    files = speechbrain_kmeans_files(source)
    chosen = sorted(layers or files)
    missing = [n for n in chosen if n not in files]
    if missing:
        raise ValueError(f"{source} has k-means for layers {sorted(files)}, not {missing}")
    quantizers = {f"L{n}": KMeans.load(files[n]) for n in chosen}
    enc = build_encoder(encoder, chosen, **options)
    check_dims(enc, quantizers)
    tok = Tokenizer(enc, quantizers, vocoder=speechbrain_vocoder(source, sorted(files)))
    tok.save_pretrained(out)
    return tok


def speechbrain_vocoder(source: str | os.PathLike, layers: Sequence[int]):
    """The repo's unit HiFi-GAN, if it has one (hyperparams.yaml + generator.ckpt); its codebook
    columns are the repo's layers, all of them, whichever the tokenizer keeps."""
    from ..vocoders import UnitVocoder
    from ..vocoders.speechbrain import GENERATOR, HYPERPARAMS

    directory = Path(source)
    if directory.is_dir():
        if not ((directory / HYPERPARAMS).exists() and (directory / GENERATOR).exists()):
            return None
        return UnitVocoder.from_speechbrain(directory, layers=layers)
    try:
        return UnitVocoder.from_speechbrain(str(source), layers=layers)
    except FileNotFoundError:  # a k-means-only repo, or the vocoder not fetchable now
        return None
