"""`speechtok import`: k-means other tools wrote, made into a speechtok tokenizer directory.

- a single k-means file (scikit-learn joblib / pickle, read through the allow-list unpickler, or a
  centroid .npy) for one layer of an encoder, optionally with a fairseq CodeHiFiGAN vocoder;
- a SpeechBrain DiscreteSSL repository (local directory or hub id): every
  `kmeans/<name>_L<layer>.pt` it holds, one stream per layer, and its unit HiFi-GAN if it has one.

The files are read by `speechtok.formats`; this module only puts the parts together.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..encoders import build_encoder
from ..errors import InputError, NotFoundError
from ..formats.speechbrain_kmeans import has_vocoder, kmeans_files
from ..quantizers import KMeans
from ..vocoders import UnitVocoder
from .semantic import Tokenizer


def import_kmeans(path: str | os.PathLike, encoder: str, layer: int | None, out: str | os.PathLike,
                  vocoder: str | os.PathLike | None = None, vocoder_config: str | os.PathLike | None = None,
                  **options) -> Tokenizer:
    """One k-means file -> a tokenizer directory; with `vocoder`, a fairseq / textlesslib
    CodeHiFiGAN checkpoint for these units goes with it."""
    km = KMeans.from_pretrained(path)
    enc = build_encoder(encoder, [] if layer is None else [layer], **options)
    stream = "mfcc" if encoder == "mfcc" else f"L{layer}"
    unit_vocoder = None
    if vocoder is not None:
        unit_vocoder = UnitVocoder.from_fairseq(vocoder, vocoder_config)
        if unit_vocoder.k != km.k:
            raise InputError(f"{vocoder} takes {unit_vocoder.k} units, but {path} has K={km.k}")
    tok = Tokenizer(enc, {stream: km}, vocoder=unit_vocoder)
    tok.save_pretrained(out)
    return tok


def import_speechbrain(source: str | os.PathLike, encoder: str, out: str | os.PathLike,
                       layers: Sequence[int] | None = None, **options) -> Tokenizer:
    files = kmeans_files(source)
    chosen = sorted(layers or files)
    missing = [n for n in chosen if n not in files]
    if missing:
        raise InputError(f"{source} has k-means for layers {sorted(files)}, not {missing}")
    quantizers = {f"L{n}": KMeans.from_pretrained(files[n]) for n in chosen}
    enc = build_encoder(encoder, chosen, **options)
    tok = Tokenizer(enc, quantizers, vocoder=speechbrain_vocoder(source, sorted(files)))
    tok.save_pretrained(out)
    return tok


def speechbrain_vocoder(source: str | os.PathLike, layers: Sequence[int]) -> UnitVocoder | None:
    """The repo's unit HiFi-GAN, if it has one (hyperparams.yaml + generator.ckpt); its codebook
    columns are the repo's layers, all of them, whichever the tokenizer keeps."""
    directory = Path(source)
    if directory.is_dir():
        return UnitVocoder.from_speechbrain(directory, layers=layers) if has_vocoder(directory) else None
    try:
        return UnitVocoder.from_speechbrain(str(source), layers=layers)
    except NotFoundError:  # a k-means-only repo, or the vocoder not fetchable now
        return None
