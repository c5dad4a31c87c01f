"""The Ray engine: a corpus job's reader and stage on a Ray cluster; the output is the local engine's.

`RayEngine.run` takes what `run_corpus` takes, with the reader and stage as `JobParts` (the workers
build them), and leaves exactly what the local engine leaves: same shard names, same rows in the
same row groups (so the same bytes and sha256), same error lists, records and manifest. It runs
`runner.drive` like the local engine, so the lock, `sink.pending`, the commits and `sink.finish`
are the same code; only where reading and encoding happen differs:

    driver: todo = sink.pending(...)                          (runner.drive, as local)
    Ray Data, streaming:
      one row per pending shard (its name and inputs)
        -> map_batches(_read_shards)    CPU tasks, a shard each (1 CPU): the shard read with
                                        `read_ahead` threads and cut by `windows`, exactly as the
                                        local engine
        -> map_batches(_EncodeWindows)  actor pool: the job's stage, on 1 GPU or 0.5 CPU each
    driver: rows gathered per shard, by input index, until the shard is complete; then its windows
            go to the sink in input order, and the sink writes and commits it as local does.

Why this shape:

- Reading is a task per shard: it needs only the front end's `audio.Reading` (sample rate, minimum
  length, normalisation), no model, so a task starts at once and any CPU node can take it.
- A reader reads a whole shard, in order, and cuts it into windows: the windows are the shard's
  Parquet row groups, and cutting them as the local engine does is what makes the files equal.
- The driver writes the shards: the sink's writer and commit protocol (`.tmp`, error list and
  record first, then the rename) run unchanged in one process. Unit rows are small (~100 bytes
  per second of audio), so one process writes them for any corpus size. Features (`extract`) are
  ~1000x larger (a 768-dim layer: ~150 kB per second of audio): the driver's disk and network
  bound that job, and it holds the features of the shards in flight; moving the writing into tasks
  that write uniquely named temp files, the driver still committing, is the next step for it.
- `map` (decode) is one actor pool: each actor builds the work once and does a shard per call,
  writing its own files (each complete when renamed, so a repeated call writes the same files).
- Resources (`pool_sizes`): an encode actor asks for 0.5 CPU (and a GPU when `device` is cuda);
  readers ask for 1 CPU and share what is left, `workers` reading threads each. With 1 CPU per
  encode actor, two actors on a 2-CPU cluster held both CPUs and the readers never ran. A CPU
  encode actor still gets `CPUs / actors` torch threads (Ray would give it 1), so on one machine
  it computes as fast as the local engine. A pool that cannot fit is refused before it starts.

Exactly once: Ray restarts a dead actor and repeats its calls, and runs a dead task again (Ray
Data's defaults: max_restarts=-1, max_task_retries=-1 for actor pools, max_retries=-1 for
tasks). A repeated call gives its rows again; the driver keeps the first row of each input index,
so a row is written once. Only the driver writes files, so a worker's death leaves nothing behind;
a killed driver leaves at most the `.tmp` of the shard it was writing, which the next run removes
before redoing exactly the shards without a file.

Transport: waves go as Ray Data tensors; each row dict is pickled as one value, so its arrays
come back to the sink exactly as the stage made them (dtype, shape), whatever Arrow would make of
them.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
from collections import defaultdict
from contextlib import contextmanager
from itertools import groupby
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import InputError, JobFailed, SpeechtokError
from .inputs import Utterance
from .reader import Loaded, read_ahead, windows
from .runner import JobParts, JobResult, Sink, Work, drive

ENCODE_CPUS = 0.5  # per encode actor: whole CPUs for every actor left none for reading (see above)
READ_CPUS = 1


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


class RayEngine:
    """Runs corpus jobs on a Ray cluster: `address` (default: RAY_ADDRESS, else a local cluster
    started for the job), `actors` encoding (default: one per GPU with a cuda `device`, else one),
    stages built on `device` ("cpu", "cuda"; None: the device the job's model was loaded with)."""

    def __init__(self, address: str | None = None, actors: int | None = None, device: str | None = None):
        if not ray_available():
            raise InputError('the Ray engine needs Ray, which is not installed: pip install "speechtok[ray]"')
        if actors is not None and actors < 1:
            raise InputError(f"the Ray engine needs at least one encoding actor, not {actors}")
        # A Ray actor sees only the GPU it was given, as device 0: cuda:N means "a GPU" there.
        if device is not None and device.startswith("cuda"):
            device = "cuda"
        self.address, self.actors, self.device = address, actors, device

    def run(self, utterances: Sequence[Utterance], indices: range, parts: JobParts, sink: Sink, *,
            window_samples: int, workers: int = 4, strict: bool = False,
            on_start: Callable[[int, int], None] | None = None,
            on_progress: Callable[[int, int], None] | None = None) -> JobResult:
        def produce(todo: list[Work]):
            return self._produce(todo, utterances, parts, window_samples, workers)

        return drive(indices, sink, produce, strict=strict, on_start=on_start, on_progress=on_progress)

    @property
    def gpu(self) -> bool:
        return self.device == "cuda"  # normalised in __init__

    def _produce(self, todo: list[Work], utterances: Sequence[Utterance], parts: JobParts, window_samples: int,
                 workers: int) -> Iterator:
        if not todo:
            return
        import ray.data

        with self._session():
            actors, readers, threads = pool_sizes(ray.cluster_resources(), len(todo), self.actors, self.gpu, workers)
            shards = [{"name": w.name, "inputs": pickle.dumps([(j, utterances[j]) for j in w.indices])} for w in todo]
            data = ray.data.from_items(shards, override_num_blocks=len(shards))
            data = data.map_batches(_read_shards, fn_kwargs={"parts": parts, "window_samples": window_samples,
                                                             "workers": workers},
                                    batch_size=1, concurrency=readers, num_cpus=READ_CPUS)
            data = data.map_batches(_EncodeWindows, fn_constructor_args=(parts, threads), batch_size=None,
                                    zero_copy_batch=False,  # the stage may write into its waves
                                    compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=ENCODE_CPUS,
                                    num_gpus=1 if self.gpu else 0)
            yield from finished_shards(data.iter_batches(batch_size=None, batch_format="numpy"), todo, utterances)

    def map(self, items: Sequence[str], build: Callable[[], Callable], *,
            on_progress: Callable[[int, int], None] | None = None) -> Iterator:
        """`runner.Engine.map` on an actor pool (`actors` of them, as encoding actors are sized):
        each actor runs `build()` once, then works; results come back as they finish. A work
        repeated after an actor died must be idempotent (decode's files are)."""
        if not items:
            return
        import ray.data

        with self._session():
            actors, _, threads = pool_sizes(ray.cluster_resources(), len(items), self.actors, self.gpu, readers=False)
            data = ray.data.from_items([{"item": item} for item in items], override_num_blocks=len(items))
            data = data.map_batches(_Works, fn_constructor_args=(build, threads), batch_size=1,
                                    compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=ENCODE_CPUS,
                                    num_gpus=1 if self.gpu else 0)
            for row in data.iter_rows():
                done = pickle.loads(row["done"])
                if on_progress is not None:
                    on_progress(*done.progress)
                yield done

    @contextmanager
    def _session(self) -> Iterator[None]:
        """Ray connected for a job (a caller's Ray, a test's or a notebook's, stays up), and its
        failures as speechtok errors."""
        import ray

        connected_here = not ray.is_initialized()
        if connected_here:
            # address None: RAY_ADDRESS if set, else a local cluster for this job alone. Ray's own
            # messages go to its log files (/tmp/ray/session_latest/logs): the command reports
            # progress and errors itself, and a worker's error reaches it as an exception.
            ray.init(address=self.address, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        try:
            _quiet_ray_data()
            yield
        except Exception as error:
            cause = _speechtok_cause(error)
            if cause is not None:
                raise cause from None  # a bad input or option found on a worker reads as it would locally
            if _cluster_failure(error):
                raise JobFailed(f"the Ray cluster failed under the job ({type(error).__name__}: {error}); "
                                "run the command again to resume from the finished work") from error
            raise
        finally:
            if connected_here:
                ray.shutdown()


def pool_sizes(resources: dict, shards: int, actors: int | None = None, gpu: bool = False,
               workers: int = 4, readers: bool = True) -> tuple[int, int, int | None]:
    """(encode actors, read actors, torch threads per CPU encode actor) on a cluster with
    `resources` (`ray.cluster_resources()`), for `shards` shards. `actors` None: one per GPU
    with `gpu`, else one. Readers share the CPUs the encoders leave, `workers` threads each
    (`readers=False`: a job without a read stage, 0 readers)."""
    cpus, gpus = resources.get("CPU", 0.0), int(resources.get("GPU", 0))
    if gpu and gpus < 1:
        raise InputError("a cuda device was asked for, but the Ray cluster has no GPU")
    actors = actors or (gpus if gpu else 1)
    # A pool that does not fit would wait for its last actor forever: refuse it now.
    if gpu and actors > gpus:
        raise InputError(f"{actors} encoding actors need a GPU each; the Ray cluster has {gpus}")
    reading = READ_CPUS if readers else 0
    if actors * ENCODE_CPUS + reading > cpus:
        raise InputError(f"{actors} encoding actors ({ENCODE_CPUS:g} CPU each)"
                         + (f" and a reader ({READ_CPUS} CPU)" if readers else "")
                         + f" need {actors * ENCODE_CPUS + reading:g} CPUs; the Ray cluster has {cpus:g}")
    count = max(1, min(shards, int((cpus - actors * ENCODE_CPUS) // max(READ_CPUS, workers)))) if readers else 0
    threads = None if gpu else max(1, int(cpus) // actors)
    return actors, count, threads


def _read_shards(batch: dict, parts: JobParts, window_samples: int, workers: int) -> Iterator[dict]:
    """Ray Data stage 1 (a task per shard): shards -> their windows of prepared waves (or read
    errors), read and cut exactly as `run_corpus` does."""
    reader = parts.reader(stream=False)  # waves travel to the encode actors: read whole here
    for name, inputs in zip(batch["name"], batch["inputs"]):
        loaded = read_ahead(pickle.loads(inputs), reader, workers, prefetch=max(16, 4 * workers))
        for number, window in enumerate(windows(loaded, window_samples)):
            yield {
                "shard": np.array([name] * len(window)),
                "window": np.full(len(window), number),
                "index": np.array([item.index for item in window]),
                "error": np.array([item.error or "" for item in window]),  # "": read (a None-only column would become NaN)
                "wave": _objects([item.wave if item.ok else np.zeros(0, np.float32) for item in window]),
            }


class _EncodeWindows:
    """Ray Data stage 2 (an actor): the job's stage over the readable waves of a batch; each row
    dict is pickled, the waves are dropped (their lengths kept)."""

    def __init__(self, parts: JobParts, threads: int | None):
        _torch_threads(threads)
        self.stage = _Built(parts.stage)

    def __call__(self, batch: dict) -> dict:
        stage = self.stage.get()
        waves = batch.pop("wave")
        good = [i for i, error in enumerate(batch["error"]) if not error]
        rows = stage([waves[i] for i in good]) if good else []
        encoded, samples = _objects([b""] * len(waves)), np.zeros(len(waves), np.int64)  # b"": unreadable
        for i, row in zip(good, rows):
            encoded[i], samples[i] = pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL), len(waves[i])
        return {**batch, "num_samples": samples, "row": encoded}


class _Works:
    """`RayEngine.map`'s stage (an actor): `build()` once, then one work per row; its result pickled."""

    def __init__(self, build: Callable[[], Callable], threads: int | None):
        _torch_threads(threads)
        self.work = _Built(build)

    def __call__(self, batch: dict) -> dict:
        work = self.work.get()
        return {"done": _objects([pickle.dumps(work(item, None), protocol=pickle.HIGHEST_PROTOCOL)
                                  for item in batch["item"]])}


def _torch_threads(threads: int | None) -> None:
    """A CPU actor computes with `threads` torch threads (Ray would give it one per CPU it asked for)."""
    if threads:
        import torch

        torch.set_num_threads(min(threads, os.cpu_count() or threads))


class _Built:
    """What `build()` gave when the actor started (loading the model while the first shard is
    read), or its exception, raised at the first call: Ray keeps a failed call's exception (a
    missing tokenizer says so), but only the text of a failed actor creation."""

    def __init__(self, build: Callable[[], object]):
        self.value, self.error = None, None
        try:
            self.value = build()
        except Exception as error:  # noqa: BLE001 - raised again, whole, by `get`
            self.error = error

    def get(self):
        if self.error is not None:
            raise self.error
        return self.value


def finished_shards(batches: Iterable[dict], todo: list[Work], utterances: Sequence[Utterance]) -> Iterator:
    """Encoded rows, in any order and possibly repeated -> (work, windows) for `runner.drive`, each
    shard as soon as all its inputs have arrived."""
    works = {w.name: w for w in todo}
    arrived: dict[str, dict[int, tuple]] = defaultdict(dict)
    done: set[str] = set()
    for batch in batches:
        for name, number, index, error, samples, row in zip(batch["shard"], batch["window"], batch["index"],
                                                             batch["error"], batch["num_samples"], batch["row"]):
            name = str(name)
            if name in done:
                continue  # a repeated call's row of a shard already written
            shard = arrived[name]
            shard.setdefault(int(index), (int(number), str(error) or None, int(samples), row))
            if len(shard) == len(works[name].indices):
                done.add(name)
                yield works[name], list(_windows(arrived.pop(name), utterances))
    missing = sorted(set(works) - done)
    if missing:
        raise JobFailed(f"the Ray job ended without every row of {len(missing)} shards ({', '.join(missing[:5])}); "
                        "run the command again to redo them")


def _windows(shard: dict[int, tuple], utterances: Sequence[Utterance]) -> Iterator:
    """A complete shard's rows -> its windows in input order, as (inputs, rows_of)."""
    for _, group in groupby(sorted(shard.items()), key=lambda item: item[1][0]):
        group = list(group)
        window = [Loaded(utterances[j], j, error=error, num_samples=samples) for j, (_, error, samples, _) in group]
        rows = [pickle.loads(row) for _, (_, error, _, row) in group if error is None]
        yield window, lambda good, rows=rows: rows


def _quiet_ray_data() -> None:
    """No Ray Data progress bars or messages on the console (its log file keeps them)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.CRITICAL + 1)  # errors too: the job raises them


def _objects(values: list) -> np.ndarray:
    """A 1-d object array of `values` (np.array would stack equal-length waves into a matrix)."""
    array = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        array[i] = value
    return array


# Ray's errors for a cluster that failed under a job (a node, an actor past its restarts, lost
# objects), as opposed to an exception raised by speechtok's own code on a worker.
_CLUSTER_FAILURES = {"ActorDiedError", "ActorUnavailableError", "NodeDiedError", "ObjectLostError",
                     "OwnerDiedError", "RaySystemError", "WorkerCrashedError", "ObjectFetchTimedOutError"}


def _cluster_failure(error: BaseException) -> bool:
    return any(type(e).__name__ in _CLUSTER_FAILURES for e in (error, error.__cause__, error.__context__) if e)


def _speechtok_cause(error: BaseException) -> SpeechtokError | None:
    """The speechtok error a worker raised, out of Ray's wrappers."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, SpeechtokError) and type(error).__module__.startswith("speechtok"):
            return error
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return None
