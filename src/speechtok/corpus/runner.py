"""The corpus loop, written once: inputs -> read ahead -> windows -> stage -> sink.

Every corpus job is a signature (what decides its output), a stage (a plain callable over a
window of prepared waves: `UnitsStage`, `FeaturesStage`) and a sink (where rows go: Parquet
shards, fairseq `.npy` / `.len`, k-means frame reservoirs). `run_corpus` drives them:

    for each unit of work the sink still needs (a shard; the whole rank for one-file sinks):
        sink.begin(work)
        read_ahead(reader) -> windows of ~window_samples -> failed inputs to sink.failed
                                                       -> stage(waves) -> sink.write(items, rows)
        sink.commit(work)
    sink.finish()

Bad inputs are recorded and the job goes on, unless `strict` (or a sink that needs every input)
stops it with `FilesFailed`, the same error in every job. Stages hold no global state, so another
engine can run them unchanged.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from ..errors import FilesFailed
from .inputs import Utterance
from .lock import hold
from .memory import limit_heap_fragmentation
from .reader import AudioReader, Loaded, read_ahead, windows


@dataclass
class JobResult:
    ok: int = 0
    failed: int = 0
    skipped_shards: int = 0
    samples: int = 0  # audio encoded in this run
    seconds: float = 0.0  # wall time of this run
    errors: list[dict] = field(default_factory=list)  # all of the rank's, this run and earlier
    shards: list[str] = field(default_factory=list)
    bytes: int = 0
    redone: list[str] = field(default_factory=list)  # finished shards found damaged and written again


@dataclass(frozen=True)
class Work:
    """A unit of work: the inputs `indices` (positions in the job's input list), written as `name`."""

    name: str
    indices: range


def error_record(item: Loaded) -> dict:
    u = item.utterance
    return {"id": u.id, "path": u.path, "start": u.start, "duration": u.duration, "reason": item.error}


def window_samples(batch_seconds: float, sample_rate: int) -> int:
    """Audio gathered before encoding: several batches, so length-bucketing has choice, and at
    least two minutes, so Parquet row groups are not tiny."""
    return int(max(4 * batch_seconds, 120.0) * sample_rate)


class Sink(Protocol):
    """Where a corpus job's rows go."""

    out: Path | None  # the directory it writes into, held by this job alone while it runs
    lock_name: str  # the lock file in `out` (ranks of one job write side by side, each under its own)
    needs_every_input: bool  # a bad input stops the job (e.g. fairseq's one-line-per-input files)

    def pending(self, indices: range, result: JobResult) -> list[Work]:
        """The work still to do among this rank's inputs (finished, intact shards are kept;
        damaged ones are listed in `result.redone` and done again)."""

    def begin(self, work: Work) -> None: ...

    def failed(self, items: list[Loaded]) -> None:
        """Inputs of the current work that could not be read."""

    def write(self, items: list[Loaded], rows: list[dict]) -> None:
        """Rows of the readable inputs of one window, in input order."""

    def commit(self, work: Work) -> None:
        """The work is complete: make it durable (a committed unit is never redone)."""

    def abort(self) -> None:
        """The job stopped with the current work unfinished: drop what it wrote."""

    def finish(self, result: JobResult) -> None:
        """All work is done: write what summarises it (manifest, errors) into `result` too."""


def run_corpus(
    utterances: Sequence[Utterance],
    indices: range,
    reader: AudioReader,
    stage: Callable[[list[np.ndarray]], list[dict]],
    sink: Sink,
    *,
    window_samples: int,
    workers: int = 4,
    strict: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> JobResult:
    """Run `stage` over `utterances[indices]` into `sink`. `on_start(total_files, files_done)` once;
    `on_progress(files, samples)` per window."""
    limit_heap_fragmentation()
    with hold(sink.out, sink.lock_name) if sink.out is not None else nullcontext():
        result = JobResult()
        started = time.perf_counter()
        todo = sink.pending(indices, result)
        if on_start:
            on_start(len(indices), len(indices) - sum(len(w.indices) for w in todo))
        loaded = read_ahead(((j, utterances[j]) for w in todo for j in w.indices), reader, workers=workers,
                            prefetch=max(16, 4 * workers))
        try:
            for work in todo:
                sink.begin(work)
                for window in windows(islice(loaded, len(work.indices)), window_samples):
                    _run_window(window, stage, sink, strict, result, on_progress)
                sink.commit(work)
        except BaseException:
            sink.abort()
            raise
        finally:
            loaded.close()  # stop the readers if the job stopped
        result.seconds = time.perf_counter() - started
        sink.finish(result)
    return result


def _run_window(window: list[Loaded], stage, sink: Sink, strict: bool, result: JobResult, on_progress) -> None:
    good = [item for item in window if item.wave is not None]
    bad = [item for item in window if item.wave is None]
    if bad and (strict or sink.needs_every_input):
        first = bad[0]
        why = ("this output needs a line per input; fix it or remove it from the manifest"
               if sink.needs_every_input else "stopped at the first bad file (--strict)")
        raise FilesFailed(f"{first.utterance.describe()}: {first.error} ({why})")
    if bad:
        sink.failed(bad)
    if good:
        sink.write(good, stage([item.wave for item in good]))
    samples = sum(len(item.wave) for item in good)
    result.ok += len(good)
    result.failed += len(bad)
    result.samples += samples
    if on_progress:
        on_progress(len(window), samples)
