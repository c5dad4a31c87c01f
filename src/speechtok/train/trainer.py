"""The training loop: resumable, one process or many (torchrun / DDP), for any `Task` (HuBERT's
masked prediction in `hubert.py`, CTC fine-tuning in `ctc.py`).

A run lives in RUN_DIR:

    run.json            what the run is (model, objective, training settings, data); a re-run with
                        other settings is refused, the same command resumes
    checkpoints/        the newest checkpoints (`checkpoints.py`), every `checkpoint_every` steps,
                        at the end, and when the process is asked to stop (SIGTERM / SIGINT)
    metrics.csv         one line per optimizer step (and valid_* lines at each checkpoint)
    final/              the trained model as a transformers directory (the task writes it)

Determinism: the batches of an epoch come from (seed, epoch); crops and masks from a generator
whose state is checkpointed, dropout from torch's RNG, also checkpointed. On a CPU with the same
seed, a run stopped and resumed ends with the parameters of one that was not.

Several processes: started by `torchrun`, each takes every WORLD_SIZE-th batch of the epoch;
gradients are averaged by DDP; rank 0 writes. The single process is the world-size-1 case.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np
import torch
from transformers import get_polynomial_decay_schedule_with_warmup

from ..corpus.store import LocalStore, claim_record
from ..errors import InputError, JobFailed
from ..runtime.device import resolve_device
from . import checkpoints
from .data import SAMPLE_RATE, Split, batch_plan

RUN_FILE = "run.json"
METRICS = "metrics.csv"


@dataclass
class TrainConfig:
    """Optimisation settings; defaults are fairseq's HuBERT base (`hubert_base_librispeech.yaml`)
    except the step counts, which a run sets."""

    max_steps: int = 400_000
    lr: float = 5e-4
    warmup_steps: int = 32_000
    power: float = 1.0  # decay after warm-up: 1 = linear to 0 (fairseq's polynomial_decay, power 1)
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    clip_norm: float = 10.0
    batch_seconds: float = 87.5  # fairseq's max_tokens 1.4M samples per process
    max_sample_seconds: float = 15.625  # crop (max_sample_size 250k)
    min_sample_seconds: float = 2.0  # shorter utterances are left out (min_sample_size 32k)
    update_freq: int = 1  # gradient accumulation
    seed: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2

    def __post_init__(self):
        for name in ("max_steps", "checkpoint_every", "update_freq", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise InputError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.min_sample_seconds < 0.1 or self.max_sample_seconds < self.min_sample_seconds:
            raise InputError("min-sample-seconds must be at least 0.1 (a few frames) and at most "
                             f"max-sample-seconds; got {self.min_sample_seconds} and {self.max_sample_seconds}")

    def to_dict(self) -> dict:
        return {**asdict(self), "betas": list(self.betas)}

    @property
    def max_samples(self) -> int:
        return int(self.max_sample_seconds * SAMPLE_RATE)

    def plan(self, split: Split, rng: np.random.Generator, crop: bool = True) -> list[list[int]]:
        """One epoch's batches of `split` under these settings (`data.batch_plan`); without
        `crop`, utterances are batched at their whole length (CTC: transcripts cannot be cut) and
        those longer than `max_sample_seconds` are left out."""
        sizes = split.sizes
        if not crop:  # too long to batch whole: left out (a size of 0 is below any minimum)
            sizes = np.where(sizes > self.max_samples, 0, sizes)
        longest = self.max_samples if crop else int(max(sizes, default=0))
        return batch_plan(sizes, int(self.batch_seconds * SAMPLE_RATE), longest, int(self.min_sample_seconds * SAMPLE_RATE),
                          rng)


class Task(Protocol):
    """What the loop trains: a module, how a split is batched, the loss of a batch, how a valid
    split is scored and how the trained model is handed off."""

    module: torch.nn.Module
    train_fields: tuple[str, ...]  # metrics.csv columns of `step_metrics`
    valid_fields: tuple[str, ...]  # metrics.csv columns of `evaluate`
    unused_parameters: bool  # some parameters may get no gradient in a step (layerdrop): DDP must know

    def describe(self) -> dict:
        """The model and objective, for run.json."""

    def plan(self, split: Split, config: TrainConfig, rng: np.random.Generator) -> list[list[int]]:
        """One epoch's batches (utterance indices)."""

    def collate(self, split: Split, indices: list[int], config: TrainConfig, rng: np.random.Generator) -> dict:
        """The batch of `indices`, with its audio length in seconds as "seconds"."""

    def loss(self, wrapped: torch.nn.Module, batch: dict, device: torch.device, rng: np.random.Generator,
             step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of a batch through `wrapped` (the module, or DDP around it) at optimizer step
        `step` (from 0), and counts that `step_metrics` turns into metrics (summed over an
        update's batches)."""

    def step_metrics(self, counts: dict[str, float]) -> dict[str, float]: ...

    def evaluate(self, split: Split, config: TrainConfig, device: torch.device) -> dict[str, float]: ...

    def write_final(self, directory: Path) -> Path:
        """The trained model as a transformers directory."""


@dataclass
class TrainResult:
    step: int
    resumed_from: int | None
    final: Path | None
    stopped: bool = False
    last: dict = field(default_factory=dict)  # the last step's metrics


class TrainingStopped(JobFailed):
    """Asked to stop (SIGTERM / SIGINT): the checkpoint is written; the same command resumes."""


def train(task: Task, train: Split, valid: Split | None, config: TrainConfig, run_dir: str | os.PathLike, *,
          device: str = "cpu", description: dict | None = None,
          on_step: Callable[[dict], None] | None = None) -> TrainResult:
    """Train `task.module` on `train` (`task.evaluate` on `valid` at each checkpoint), resuming
    RUN_DIR's newest checkpoint if there is one. `description` (data, model source) joins
    run.json. `on_step(metrics)` after every optimizer step (rank 0)."""
    run_dir = Path(run_dir)
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    target = resolve_device(_rank_device(device))
    if target.type == "cuda":
        torch.cuda.set_device(target)  # this process's GPU, for NCCL and the RNG state
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if target.type == "cuda" else "gloo")
    model = task.module
    run = {**task.describe(), "train": config.to_dict(), "world_size": world, **(description or {})}
    if rank == 0:  # start RUN_DIR, or check it holds this same run
        run_dir.mkdir(parents=True, exist_ok=True)
        claim_record(LocalStore(run_dir), RUN_FILE, run, "run")
    _barrier(world)  # RUN_DIR claimed before any rank reads its checkpoints
    torch.manual_seed(config.seed)
    model.to(target).train()
    trained = [p for p in model.parameters() if p.requires_grad]  # not a frozen feature encoder
    optimizer = torch.optim.AdamW(trained, lr=config.lr, betas=config.betas, eps=config.eps,
                                  weight_decay=config.weight_decay)
    scheduler = get_polynomial_decay_schedule_with_warmup(optimizer, config.warmup_steps, config.max_steps,
                                                          lr_end=0.0, power=config.power)
    state = {"epoch": 0, "position": 0, "rng": np.random.default_rng([config.seed, rank]).bit_generator.state}
    resumed = checkpoints.latest(run_dir)
    step = 0
    if resumed is not None:
        state = checkpoints.restore(resumed, model, optimizer, scheduler, rank, target)
        step = state.pop("step")
        if rank == 0:
            _truncate_metrics(run_dir / METRICS, step)
    rng = np.random.default_rng()
    rng.bit_generator.state = state["rng"]
    wrapped = model if world == 1 else torch.nn.parallel.DistributedDataParallel(
        model, find_unused_parameters=task.unused_parameters)
    batches = _Batches(task, train, config, world, rank, state["epoch"], state["position"])
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if target.type == "cuda" else nullcontext()
    result = TrainResult(step, None if resumed is None else step, None)

    def save() -> None:
        tmp = checkpoints.begin(run_dir, step) if rank == 0 else checkpoints.staging(run_dir, step)
        _barrier(world)
        checkpoints.save_random_states(tmp, rank, rng.bit_generator.state, target)
        _barrier(world)
        if rank == 0:
            checkpoints.finish(tmp, model, optimizer, scheduler,
                               {"step": step, "epoch": batches.epoch, "position": batches.position},
                               config.keep_checkpoints)
        _barrier(world)

    fields = ["step", "epoch", "loss", *task.train_fields, "lr", "audio_seconds", "seconds", *task.valid_fields]
    with _stop_requests() as stop, open(run_dir / METRICS if rank == 0 else os.devnull, "a", newline="") as log:
        writer = csv.DictWriter(log, fields)
        if log.tell() == 0:
            writer.writeheader()
        while step < config.max_steps:
            started = time.perf_counter()
            loss_sum, counts, seconds = 0.0, {}, 0.0
            for micro in range(config.update_freq):
                batch = batches.next(rng)
                sync = nullcontext() if world == 1 or micro == config.update_freq - 1 else wrapped.no_sync()
                with sync, autocast:
                    loss, batch_counts = task.loss(wrapped, batch, target, rng, step)
                    (loss / config.update_freq).backward()
                loss_sum += float(loss.detach()) / config.update_freq
                for name, value in batch_counts.items():
                    counts[name] = counts.get(name, 0) + value
                seconds += batch["seconds"]
            if config.clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(trained, config.clip_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            metrics = {"step": step, "epoch": batches.epoch, "loss": loss_sum, "lr": lr, **task.step_metrics(counts),
                       "audio_seconds": seconds * world, "seconds": time.perf_counter() - started}
            result.last = metrics
            if rank == 0:
                writer.writerow(metrics)
                if on_step is not None:
                    on_step(metrics)
            stopping = _any_rank(stop.requested is not None, world, target)  # all ranks stop at the same step
            if step % config.checkpoint_every == 0 or step == config.max_steps or stopping:
                if valid is not None and rank == 0:
                    writer.writerow({"step": step, **task.evaluate(valid, config, target)})
                log.flush()
                save()
            if stopping and step < config.max_steps:
                result.step, result.stopped = step, True
                raise TrainingStopped(f"stopped at step {step} ({stop.requested or 'another process'}); the checkpoint is in "
                                      f"{run_dir / checkpoints.CHECKPOINTS}: run the same command to resume")
    result.step = step
    final = run_dir / "final"
    if rank == 0:  # a finished run re-run keeps the final/ it wrote
        result.final = final if result.resumed_from == config.max_steps and final.exists() else _write_final(task, final)
    return result


def _write_final(task: Task, directory: Path) -> Path:
    """`task.write_final` into a temporary directory, then renamed: final/ is whole or absent."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    task.write_final(tmp)
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory


class _Batches:
    """The batches of each epoch in order, from where a checkpoint left off; this rank's share."""

    def __init__(self, task: Task, split: Split, config: TrainConfig, world: int, rank: int, epoch: int, position: int):
        self.task, self.split, self.config, self.world, self.rank = task, split, config, world, rank
        self.epoch, self.position = epoch, position
        self._plan = self._epoch_plan()

    def _epoch_plan(self) -> list[list[int]]:
        c = self.config
        plan = self.task.plan(self.split, c, np.random.default_rng([c.seed, self.epoch, 1]))
        if not plan:
            raise InputError(f"{self.split.name}: no utterance is at least {c.min_sample_seconds:g} s long")
        if len(plan) < self.world:
            raise InputError(f"{self.split.name}: {len(plan)} batches for {self.world} processes; give more data or "
                             "smaller --batch-seconds")
        usable = len(plan) // self.world * self.world  # every rank takes as many steps
        return plan[:usable][self.rank :: self.world]

    def next(self, rng: np.random.Generator) -> dict:
        if self.position >= len(self._plan):
            self.epoch, self.position = self.epoch + 1, 0
            self._plan = self._epoch_plan()
        indices = self._plan[self.position]
        self.position += 1
        return self.task.collate(self.split, indices, self.config, rng)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop the lines a killed run logged after its last checkpoint (they are done again), and a
    last line it may have left half-written."""
    if not path.exists():
        return
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    reader = csv.DictReader(lines)
    rows = [r for r in reader if None not in r.values() and int(r["step"]) <= step]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, reader.fieldnames or [])
        writer.writeheader()
        writer.writerows(rows)


def _barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def _any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """`flag` of any process (a stop asked of one stops all, at the same step)."""
    if world == 1:
        return flag
    value = torch.tensor([int(flag)], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def _rank_device(device: str) -> str:
    """cuda -> cuda:LOCAL_RANK under torchrun."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


class _StopRequest:
    requested: str | None = None


@contextmanager
def _stop_requests() -> Iterator[_StopRequest]:
    """SIGTERM / SIGINT ask the loop to stop after the step it is in (and checkpoint), instead of
    killing it mid-step; a second signal kills as usual."""
    request = _StopRequest()
    previous = {}

    def handler(signum, frame):
        if request.requested:
            signal.signal(signum, previous[signum])
            os.kill(os.getpid(), signum)
            return
        request.requested = signal.Signals(signum).name

    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread: no handlers, the loop runs as it is
            pass
    try:
        yield request
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def warmup_default(max_steps: int) -> int:
    """fairseq's HuBERT base warms up for 8% of its steps (32k of 400k)."""
    return max(1, math.ceil(0.08 * max_steps))
