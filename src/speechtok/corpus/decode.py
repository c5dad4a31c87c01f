"""`speechtok decode`: a tokenized corpus back to audio, one .wav per utterance.

The tokenizer that made the tokens is rebuilt from the corpus manifest (or one is given). The unit
of work is a shard of the tokenized corpus: its utterances are decoded a batch at a time and each
file is written under a temporary name and renamed when complete; files already there are
skipped, so an interrupted run resumes where it stopped, and a repeated work writes the same
files again. The engine (`runner.Engine.map`) decides where shards are decoded: in this process,
or by Ray actors that read the shard and write the files themselves (DEST on a shared file
system). Memory holds one shard's tokens and one batch of audio.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InputError
from ..tokenizer import CodecTokenizer, TokenizerBase, load
from ..tokenizer.presets import PRESETS
from ..units import Units
from .inputs import file_for_id
from .lock import hold
from .manifest import TokenizedCorpus
from .runner import Engine, LocalEngine, window_samples
from .store import atomic_write_wave


@dataclass
class DecodeResult:
    written: int = 0
    skipped: int = 0  # already decoded by an earlier run
    samples: int = 0
    files: list[Path] = field(default_factory=list)

    @property
    def progress(self) -> tuple[int, int]:
        """(files, samples) done: what `Engine.map` reports for a work done elsewhere."""
        return self.written + self.skipped, self.samples

    def add(self, other: DecodeResult) -> None:
        self.written += other.written
        self.skipped += other.skipped
        self.samples += other.samples
        self.files += other.files


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


class DecodeParts:
    """What decodes one shard (`work()` gives `decode(shard, progress)`, for `Engine.map`). In the
    process that made it, the tokenizer given; pickled, it keeps how to load it again (its
    `load_args`, or for a codec rebuilt from the manifest, the corpus), and a worker loads it on
    `device`."""

    def __init__(self, corpus: str | os.PathLike, dest: str | os.PathLike, tokenizer: TokenizerBase,
                 device: str | None = None):
        self.corpus, self.dest = str(corpus), str(dest)
        self.load_args, self.batch_seconds, self.device = tokenizer.load_args, tokenizer.batch_seconds, device
        self.config = tokenizer.to_dict()
        self._tokenizer: TokenizerBase | None = tokenizer if device is None else None

    def tokenizer(self) -> TokenizerBase:
        if self._tokenizer is None:
            self._tokenizer = (tokenizer_of(self.corpus, self.device) if self.load_args is None
                               else self.load_args.load(device=self.device))
            self._tokenizer.batch_seconds = self.batch_seconds
        return self._tokenizer

    def work(self) -> Callable[[str, Callable | None], DecodeResult]:
        corpus, tokenizer, dest = TokenizedCorpus.open(self.corpus), self.tokenizer(), Path(self.dest)
        return lambda shard, progress: decode_shard(corpus, shard, dest, tokenizer, progress)

    def __getstate__(self) -> dict:
        # refused here, before any work: a worker would rebuild the corpus's own tokenizer instead
        if self.load_args is None and self.config != TokenizedCorpus.open(self.corpus).tokenizer:
            raise InputError("this tokenizer cannot be loaded in another process: save it with save_pretrained "
                             "and load it with speechtok.load (or decode with the corpus's own tokenizer)")
        return {**self.__dict__, "_tokenizer": None}  # the model is loaded again, never sent


def decode_corpus(out: str | os.PathLike, dest: str | os.PathLike, tokenizer: TokenizerBase,
                  engine: Engine | None = None,
                  on_start: Callable[[int, int], None] | None = None,
                  on_progress: Callable[[int, int], None] | None = None) -> DecodeResult:
    """Write `dest/<id>.wav` for every utterance tokenized into `out` (`inputs.file_for_id`). `engine`: where shards are
    decoded (default: this process). `on_start(files, done)` once, `on_progress(files, samples)` as
    files are done (the corpus jobs' progress protocol)."""
    corpus, dest = TokenizedCorpus.open(out), Path(dest)
    if not tokenizer.has_decoder:
        raise InputError(f"{type(tokenizer).__name__} has no decoder")
    corpus.unit_columns()  # checks the rows can be decoded before any work
    engine = engine or LocalEngine()
    with hold(dest):
        if on_start is not None:
            on_start(len(corpus), 0)
        result = DecodeResult()
        parts = DecodeParts(out, dest, tokenizer, engine.device)
        for done in engine.map([str(p) for p in corpus.shard_files], parts.work, on_progress=on_progress):
            result.add(done)
        return result


def decode_shard(corpus: TokenizedCorpus, shard: Path | str, dest: Path, tokenizer: TokenizerBase,
                 on_progress: Callable[[int, int], None] | None = None) -> DecodeResult:
    """Decode the utterances of one shard not decoded yet, a batch of audio at a time."""
    result = DecodeResult()
    budget = window_samples(tokenizer.batch_seconds, corpus.sample_rate)  # several of the tokenizer's batches
    pending: list[tuple[Path, Units]] = []
    for utterance, unit in corpus.iter_units([shard]):
        target = file_for_id(dest, utterance, ".wav")
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
        atomic_write_wave(target, audio, tokenizer.decode_sample_rate)
        result.written += 1
        result.samples += len(audio)
        result.files.append(target)
        if on_progress is not None:
            on_progress(1, len(audio))
