"""Training checkpoints: written whole or not at all, read back without unpickling code.

    RUN_DIR/checkpoints/step-00000100/
        model.safetensors   every parameter and buffer of the model being trained
        state.pt            optimizer and scheduler state, torch's RNG state: tensors, numbers and
                            lists only, read with torch's weights_only loader
        trainer.json        step, epoch, position in the epoch's batches, the data RNG's state

A checkpoint is written into `step-N.tmp/` and renamed, so a directory without `.tmp` is whole; the
newest one is what a re-run resumes from. Only the newest `keep` are kept.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

CHECKPOINTS = "checkpoints"
PREFIX = "step-"


def save(run_dir: Path, step: int, model: torch.nn.Module, optimizer, scheduler, trainer: dict, keep: int = 2) -> Path:
    root = run_dir / CHECKPOINTS
    final = root / f"{PREFIX}{step:08d}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng}, tmp / "state.pt")
    (tmp / "trainer.json").write_text(json.dumps({**trainer, "step": step}, indent=2) + "\n")
    if final.exists():  # the same step saved again (a stop right after a periodic checkpoint)
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(p for p in root.glob(f"{PREFIX}*") if not p.name.endswith(".tmp"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(run_dir: Path) -> Path | None:
    """The newest whole checkpoint of a run, if any (half-written ones are removed)."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return None
    for tmp in root.glob(f"{PREFIX}*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    done = sorted(p for p in root.glob(f"{PREFIX}*") if p.is_dir())
    return done[-1] if done else None


def restore(path: Path, model: torch.nn.Module, optimizer, scheduler) -> dict:
    """Load a checkpoint into the model, optimizer, scheduler and torch's RNG; returns trainer.json."""
    missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=True)
    state = torch.load(path / "state.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["cpu"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return json.loads((path / "trainer.json").read_text())
