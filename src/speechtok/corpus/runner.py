"""The corpus loop, written once: inputs -> read ahead -> windows -> stage -> sink.

Every corpus job is a signature (what decides its output), a stage (a plain callable over a
window of prepared waves: `UnitsStage`, `FeaturesStage`) and a sink (where rows go: Parquet
shards, fairseq `.npy` / `.len`, k-means frame reservoirs). `drive` is what every engine shares:

    hold OUT; todo = sink.pending(...)                  (the units of work still to do: shards)
    for each unit of work an engine has finished (`produce`; any order):
        sink.begin(work)
        per window: failed inputs -> sink.failed, rows of the readable ones -> sink.write
        sink.commit(work)
    sink.finish()

The engine decides where reading and encoding happen. `run_corpus` (`LocalEngine`) does it in
this process: read_ahead(reader threads) -> windows of ~window_samples -> stage, work by work, in
order. `ray_engine.RayEngine` runs the same reader and stage on a Ray cluster; it builds them on
its workers from `JobParts`, which is why jobs hand engines a `JobParts` and not the objects.

Bad inputs are recorded and the job goes on, unless `strict` (or a sink that needs every input)
stops it with `FilesFailed`, the same error in every job and engine.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import islice
from typing import Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np

from ..audio import readable
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
    return {"id": u.id, "path": readable(u.locator), "start": u.start, "duration": u.duration, "reason": readable(item.error)}


def window_samples(batch_seconds: float, sample_rate: int) -> int:
    """Audio gathered before encoding: several batches, so length-bucketing has choice, and at
    least two minutes, so Parquet row groups are not tiny."""
    return int(max(4 * batch_seconds, 120.0) * sample_rate)


class Sink(Protocol):
    """Where a corpus job's rows go."""

    out: str | os.PathLike | None  # the directory (or object store URL) it writes into, held by this job alone while it runs
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


Stage = Callable[[list[np.ndarray]], list[dict]]  # prepared waves -> one row dict per wave
# Besides its columns, a row may carry what is known of an input streamed through the stage (read
# as it is encoded: `reader.WaveStream`) only once it has been read: the reason it failed, and its
# exact length.
ROW_ERROR, ROW_SAMPLES = "_error", "_num_samples"

# What an engine gives `drive`: finished works, each with its windows in input order; a window is
# its inputs and `rows_of(readable inputs)` (the local engine encodes only when asked, so --strict
# stops before encoding a window with a bad input).
Produced = Iterable[tuple[Work, Iterable[tuple[list[Loaded], Callable[[list[Loaded]], list[dict]]]]]]


class JobParts(Protocol):
    """A job's reader and stage, built in the process that runs them. Picklable, and cheap to
    pickle (what builds them, not what they hold), so an engine can build them on its workers."""

    def reader(self, stream: bool = True) -> AudioReader:
        """`stream`: long files may be left to the stage to read as it encodes (`reader.WaveStream`);
        an engine that sends waves to other processes asks for whole waves."""

    def stage(self) -> Stage: ...


def drive(indices: range, sink: Sink, produce: Callable[[list[Work]], Produced], *, strict: bool = False,
          on_start: Callable[[int, int], None] | None = None,
          on_progress: Callable[[int, int], None] | None = None) -> JobResult:
    """Hold the sink's OUT, ask it what is left of `indices`, hand it every window `produce(todo)`
    gives, a work at a time, and let it finish. `produce` yields (work, windows) with each window
    as (inputs, rows_of): `rows_of(readable inputs)` gives their rows, in input order."""
    limit_heap_fragmentation()
    with hold(sink.out, sink.lock_name) if sink.out is not None else nullcontext():
        result = JobResult()
        started = time.perf_counter()
        todo = sink.pending(indices, result)
        if on_start:
            on_start(len(indices), len(indices) - sum(len(w.indices) for w in todo))
        produced = produce(todo)
        try:
            for work, encoded in produced:
                sink.begin(work)
                for window, rows_of in encoded:
                    _deliver(window, rows_of, sink, strict, result, on_progress)
                sink.commit(work)
        except BaseException:
            sink.abort()
            raise
        finally:
            getattr(produced, "close", lambda: None)()  # stop the engine's workers if the job stopped
        result.seconds = time.perf_counter() - started
        sink.finish(result)
    return result


def run_corpus(
    utterances: Sequence[Utterance],
    indices: range,
    reader: AudioReader,
    stage: Stage,
    sink: Sink,
    *,
    window_samples: int,
    workers: int = 4,
    strict: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> JobResult:
    """Run `stage` over `utterances[indices]` into `sink`, in this process. `on_start(total_files,
    files_done)` once; `on_progress(files, samples)` per window."""

    def encode(good: list[Loaded]) -> list[dict]:
        return stage([item.wave for item in good])

    def produce(todo: list[Work]) -> Iterator:
        loaded = read_ahead(((j, utterances[j]) for w in todo for j in w.indices), reader, workers=workers,
                            prefetch=max(16, 4 * workers))
        try:
            for work in todo:
                yield work, ((window, encode) for window in windows(islice(loaded, len(work.indices)), window_samples))
        finally:
            loaded.close()  # stop the readers if the job stopped

    return drive(indices, sink, produce, strict=strict, on_start=on_start, on_progress=on_progress)


class Done(Protocol):
    """What a work given to `Engine.map` returns."""

    @property
    def progress(self) -> tuple[int, int]:
        """(files, samples) it did."""


class Engine(Protocol):
    """Where a corpus job runs. `run` takes `run_corpus`'s arguments with the reader and stage as
    `JobParts`. `map` runs jobs whose works are not audio inputs (e.g. decoding the shards of a
    tokenized corpus): `work = build()` once per process that does works (picklable, like
    `JobParts`), then `work(item, progress)` per item, results in any order; `progress(files,
    samples)` is `on_progress` where works run in this process, None elsewhere (the engine then
    reports each result's `progress`). `device`: where the engine builds what it runs (None: where
    the job's model is)."""

    device: str | None

    def run(self, utterances: Sequence[Utterance], indices: range, parts: JobParts, sink: Sink, *,
            window_samples: int, workers: int = 4, strict: bool = False,
            on_start: Callable[[int, int], None] | None = None,
            on_progress: Callable[[int, int], None] | None = None) -> JobResult: ...

    def map(self, items: Sequence[str], build: Callable[[], Callable], *,
            on_progress: Callable[[int, int], None] | None = None) -> Iterator[Done]: ...


class LocalEngine:
    """`run_corpus` in this process: the default engine."""

    device = None  # stages run where the job's model already is

    def run(self, utterances: Sequence[Utterance], indices: range, parts: JobParts, sink: Sink, **options) -> JobResult:
        return run_corpus(utterances, indices, parts.reader(), parts.stage(), sink, **options)

    def map(self, items: Sequence[str], build: Callable[[], Callable], *,
            on_progress: Callable[[int, int], None] | None = None) -> Iterator[Done]:
        work = build()
        for item in items:
            yield work(item, on_progress)


def _deliver(window: list[Loaded], rows_of, sink: Sink, strict: bool, result: JobResult, on_progress) -> None:
    good = [item for item in window if item.ok]
    bad = [item for item in window if not item.ok]
    _stop_if_refused(bad, sink, strict)  # before encoding: --strict stops before the window is encoded
    rows = rows_of(good) if good else []
    for item, row in zip(good, rows):  # what is known of a streamed input only once it is read
        item.num_samples = row.pop(ROW_SAMPLES, item.num_samples)
        item.error = row.pop(ROW_ERROR, None)
    if any(not item.ok for item in good):
        late = [item for item in good if not item.ok]
        _stop_if_refused(late, sink, strict)
        bad += late
        good, rows = [i for i in good if i.ok], [r for i, r in zip(good, rows) if i.ok]
    if bad:
        sink.failed(bad)
    if good:
        sink.write(good, rows)
    samples = sum(item.num_samples for item in good)
    result.ok += len(good)
    result.failed += len(bad)
    result.samples += samples
    if on_progress:
        on_progress(len(window), samples)


def _stop_if_refused(bad: list[Loaded], sink: Sink, strict: bool) -> None:
    if bad and (strict or sink.needs_every_input):
        first = bad[0]
        why = ("this output needs a line per input; fix it or remove it from the manifest"
               if sink.needs_every_input else "stopped at the first bad file (--strict)")
        raise FilesFailed(f"{first.utterance.describe()}: {first.error} ({why})")
