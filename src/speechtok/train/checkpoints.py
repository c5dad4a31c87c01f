"""Training checkpoints: written whole or not at all, read back without unpickling code.

    RUN_DIR/checkpoints/step-00000100/
        model.safetensors   every parameter and buffer of the model being trained
        state.pt            optimizer and scheduler state: tensors, numbers and lists only, read
                            with torch's weights_only loader
        trainer.json        step, epoch, position in the epoch's batches
        rank-K.pt           each process's random states (torch's, its GPU's, the data RNG's)

A checkpoint is written into `step-N.tmp/` (every rank its own random states) and renamed by rank
0, so a `step-N` directory is whole; the newest one is what a re-run resumes from. Only the newest
`keep` are kept.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

CHECKPOINTS = "checkpoints"
NAME = re.compile(r"step-\d{8}")  # a whole checkpoint (not .tmp, not .old)


def name(step: int) -> str:
    return f"step-{step:08d}"


def staging(run_dir: Path, step: int) -> Path:
    """The temporary directory step `step`'s checkpoint is written into."""
    return run_dir / CHECKPOINTS / (name(step) + ".tmp")


def begin(run_dir: Path, step: int) -> Path:
    """Make `staging(run_dir, step)` empty (rank 0, before every rank writes into it)."""
    tmp = staging(run_dir, step)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def save_random_states(tmp: Path, rank: int, data_rng: dict, device: torch.device) -> None:
    """This process's random states: torch's CPU generator, its GPU's, and the data RNG's."""
    states = {"cpu": torch.get_rng_state(), "data": data_rng}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    torch.save(states, tmp / f"rank-{rank}.pt")


def finish(tmp: Path, model: torch.nn.Module, optimizer, scheduler, trainer: dict, keep: int = 2) -> Path:
    """Write the shared part and rename `tmp` to the checkpoint (rank 0, after every rank's
    `save_random_states`)."""
    save_model(model, str(tmp / "model.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "state.pt")
    (tmp / "trainer.json").write_text(json.dumps(trainer, indent=2) + "\n")
    final = tmp.with_name(tmp.name.removesuffix(".tmp"))
    if final.exists():  # the same step again (a stop right after a periodic checkpoint): set aside first
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    for stale in _whole(final.parent)[:-keep]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def latest(run_dir: Path) -> Path | None:
    """The newest whole checkpoint of a run, if any."""
    root = run_dir / CHECKPOINTS
    done = _whole(root) if root.is_dir() else []
    return done[-1] if done else None


def _whole(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and NAME.fullmatch(p.name))


def restore(path: Path, model: torch.nn.Module, optimizer, scheduler, rank: int, device: torch.device) -> dict:
    """Load a checkpoint into the model, optimizer, scheduler and this process's random states;
    returns trainer.json with this rank's data RNG state as `rng`."""
    load_model(model, str(path / "model.safetensors"), strict=True)
    state = torch.load(path / "state.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    mine = path / f"rank-{rank}.pt"
    if not mine.exists():
        raise FileNotFoundError(f"{mine}: the checkpoint was written by fewer processes; resume it with as many")
    states = torch.load(mine, weights_only=True, map_location="cpu")
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)
    return {**json.loads((path / "trainer.json").read_text()), "rng": states["data"]}
