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

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from ..tokenizer import TokenizerBase
from ..units import Units
from .export import ExportError, read_manifests

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
    from ..codecs import CodecTokenizer
    from ..tokenizer import load

    manifest = read_manifests(Path(out))[0]
    config = manifest["tokenizer"]
    if config.get("kind") == "codec":
        return CodecTokenizer.from_config(config, device=device)
    source = manifest.get("tokenizer_source")
    from ..presets import PRESETS

    known = source and (Path(source).exists() or source in PRESETS)  # a tokenizer directory or a preset name
    tokenizer = load(source, device=device) if known else None
    if tokenizer is None or not tokenizer.has_decoder:
        raise ExportError(f"{out} holds semantic units and the tokenizer that made them has no decoder (a unit "
                          "vocoder comes with `speechtok import speechbrain`); pass --tokenizer with one that has")
    return tokenizer


def decode_corpus(out: str | os.PathLike, dest: str | os.PathLike, tokenizer: TokenizerBase,
                  on_start: Callable[[int, int], None] | None = None,
                  on_progress: Callable[[int, int], None] | None = None) -> DecodeResult:
    """Write `dest/<id>.wav` for every utterance tokenized into `out`. `on_start(files, done)` once,
    `on_progress(files, samples)` as files are done (the corpus jobs' progress protocol)."""
    out, dest = Path(out), Path(dest)
    manifests = read_manifests(out)
    meta = manifests[0]
    streams = meta["streams"]
    if meta.get("dedup") and len(streams) > 1:
        raise ExportError(f"{out} was tokenized with --dedup over several streams, each deduplicated on its "
                          "own; such rows cannot be decoded together")
    if not tokenizer.has_decoder:
        raise ExportError(f"{type(tokenizer).__name__} has no decoder")
    durations = f"{streams[0]}_durations" if meta.get("dedup") else None
    shards = [out / s["file"] for m in manifests for s in m["shards"]]
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in shards)
    if on_start is not None:
        on_start(total, 0)
    result = DecodeResult()
    budget = int(DECODE_BATCH_SECONDS * meta["sample_rate"])
    for shard in shards:
        table = pq.read_table(shard, columns=["id", "num_samples", *streams, *([durations] if durations else [])])
        ids = table.column("id").to_pylist()
        sizes = table.column("num_samples").to_pylist()
        columns = [table.column(s).to_pylist() for s in streams]
        runs = table.column(durations).to_pylist() if durations else None
        pending: list[tuple[Path, Units]] = []
        for row, utterance in enumerate(ids):
            target = dest / f"{utterance}.wav"
            if target.exists():
                result.skipped += 1
                if on_progress is not None:
                    on_progress(1, 0)
                continue
            codes = np.stack([np.asarray(c[row], dtype=np.int64) for c in columns], axis=1)
            pending.append((target, Units(codes=codes, streams=streams, frame_rate=meta["frame_rate"],
                                          vocab_sizes=meta["vocab_sizes"], num_samples=sizes[row],
                                          sample_rate=meta["sample_rate"],
                                          durations=None if runs is None else runs[row])))
            if sum(u.num_samples for _, u in pending) >= budget:
                _write(pending, tokenizer, result, on_progress)
                pending = []
        _write(pending, tokenizer, result, on_progress)
    return result


def _write(pending: list[tuple[Path, Units]], tokenizer: TokenizerBase, result: DecodeResult, on_progress) -> None:
    if not pending:
        return
    for (target, units), audio in zip(pending, tokenizer.decode_batch([u for _, u in pending])):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        sf.write(tmp, audio, tokenizer.decode_sample_rate, format="WAV", subtype="FLOAT")
        os.replace(tmp, target)  # a .wav that exists is complete
        result.written += 1
        result.samples += len(audio)
        result.files.append(target)
        if on_progress is not None:
            on_progress(1, len(audio))
