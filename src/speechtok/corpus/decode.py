"""`speechtok decode`: a tokenized corpus back to audio, one .wav per utterance.

The tokenizer that made the tokens is rebuilt from the corpus manifest (or one is given). Each
file is written under a temporary name and renamed when complete, and files already there are
skipped, so an interrupted run resumes where it stopped. Memory holds one shard's tokens and
one batch of audio.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import soundfile as sf

from ..errors import InputError
from ..tokenizer import CodecTokenizer, TokenizerBase, load
from ..tokenizer.presets import PRESETS
from ..units import Units
from .lock import hold
from .manifest import TokenizedCorpus

DECODE_BATCH_SECONDS = 600.0  # audio decoded per call; the tokenizer batches within it


@dataclass
class DecodeResult:
    written: int = 0
    skipped: int = 0  # already decoded by an earlier run
    samples: int = 0
    files: list[Path] = field(default_factory=list)


def tokenizer_of(out: str | os.PathLike, device: str = "cpu") -> TokenizerBase:
    """The tokenizer that tokenized `out`: a codec rebuilt from the manifest's config; a semantic
    tokenizer reloaded from the directory it was loaded from (which holds its vocoder)."""
    corpus = TokenizedCorpus.open(out)
    config = dict(corpus.tokenizer)
    if config.get("type", config.get("kind")) == "codec":
        return CodecTokenizer.from_dict(config, device=device)
    source = corpus.tokenizer_source
    known = source and (Path(source).exists() or source in PRESETS)  # a tokenizer directory or a preset name
    tokenizer = load(source, device=device) if known else None
    if tokenizer is None or not tokenizer.has_decoder:
        raise InputError(f"{out} holds semantic units and the tokenizer that made them has no decoder (a unit "
                         "vocoder comes with `speechtok import speechbrain`); pass --tokenizer with one that has")
    return tokenizer


def decode_corpus(out: str | os.PathLike, dest: str | os.PathLike, tokenizer: TokenizerBase,
                  on_start: Callable[[int, int], None] | None = None,
                  on_progress: Callable[[int, int], None] | None = None) -> DecodeResult:
    """Write `dest/<id>.wav` for every utterance tokenized into `out`. `on_start(files, done)` once,
    `on_progress(files, samples)` as files are done (the corpus jobs' progress protocol)."""
    corpus, dest = TokenizedCorpus.open(out), Path(dest)
    if not tokenizer.has_decoder:
        raise InputError(f"{type(tokenizer).__name__} has no decoder")
    units = corpus.iter_units()  # checks the rows can be decoded before any work
    with hold(dest):
        return _decode(corpus, units, dest, tokenizer, on_start, on_progress)


def _decode(corpus: TokenizedCorpus, units, dest: Path, tokenizer: TokenizerBase, on_start, on_progress) -> DecodeResult:
    if on_start is not None:
        on_start(len(corpus), 0)
    result = DecodeResult()
    budget = int(DECODE_BATCH_SECONDS * corpus.sample_rate)
    pending: list[tuple[Path, Units]] = []
    for utterance, unit in units:
        target = dest / f"{utterance}.wav"
        if target.exists():
            result.skipped += 1
            if on_progress is not None:
                on_progress(1, 0)
            continue
        pending.append((target, unit))
        if sum(u.num_samples for _, u in pending) >= budget:
            _write(pending, tokenizer, result, on_progress)
            pending = []
    _write(pending, tokenizer, result, on_progress)
    return result


def _write(pending: list[tuple[Path, Units]], tokenizer: TokenizerBase, result: DecodeResult, on_progress) -> None:
    if not pending:
        return
    for (target, _), audio in zip(pending, tokenizer.decode_batch([u for _, u in pending])):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        sf.write(tmp, audio, tokenizer.decode_sample_rate, format="WAV", subtype="FLOAT")
        os.replace(tmp, target)  # a .wav that exists is complete
        result.written += 1
        result.samples += len(audio)
        result.files.append(target)
        if on_progress is not None:
            on_progress(1, len(audio))
