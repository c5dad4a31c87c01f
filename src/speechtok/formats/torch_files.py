"""Reading other tools' PyTorch checkpoints safely, and folding their weight norm.

Checkpoints are pickles. Every one speechtok reads goes through `load_checkpoint`:
`torch.load(weights_only=True)` (tensors and plain containers only) inside
`torch.serialization.safe_globals` with the extra types the caller allows, so a file that would
run code is refused, naming what it holds, before anything from it is called.

Weight norm comes in two forms, torch's original (`weight_g` / `weight_v`) and the parametrization
(`parametrizations.weight.original0` / `original1`); both fold to w = g * v / |v|, the norm over all
but the first dimension, as `torch.nn.utils.weight_norm` computes it (dim=0) for Conv1d and
ConvTranspose1d alike.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Sequence

import torch

from ..errors import FormatError, NotFoundError, UnsafeFileError

_WEIGHT_NORM = {"weight_g": "g", "weight_v": "v", "parametrizations.weight.original0": "g",
                "parametrizations.weight.original1": "v"}


def load_checkpoint(path: str | Path, what: str = "checkpoint", allow: Sequence = (),
                    allowed_description: str = "tensors and builtin containers") -> dict:
    """The dict a torch checkpoint holds, read without running code. `allow`: extra globals
    (classes, or (stand-in, "module.Name") pairs) the file may name."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such {what}")
    try:
        with torch.serialization.safe_globals(list(allow)):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL (\S+) (?:was not an allowed global|whose module)", str(error))
        if not found:
            raise FormatError(f"{path}: not a loadable {what} ({str(error).splitlines()[0]})") from None
        raise UnsafeFileError(
            f"{path}: refused to load: not a loadable {what}, it holds {found.group(1)}, which is not on "
            f"speechtok's allow-list ({allowed_description}). Nothing from it was run."
        ) from None
    except Exception as error:  # noqa: BLE001 - torch raises RuntimeError, EOFError, ... on a damaged file
        raise FormatError(f"{path}: not a loadable {what} ({type(error).__name__}: {error})") from None
    if not isinstance(checkpoint, dict):
        raise FormatError(f"{path}: expected a dict of weights, found {type(checkpoint).__name__}")
    return checkpoint


def fold_weight_norm(state: dict, path: str | Path = "checkpoint") -> dict[str, torch.Tensor]:
    """Plain float32 weights: every (g, v) pair folded into `weight`; other tensors as they are."""
    plain: dict[str, torch.Tensor] = {}
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise FormatError(f"{path}: {name} is a {type(tensor).__name__}, not a tensor")
        for suffix, part in _WEIGHT_NORM.items():
            if name.endswith("." + suffix):
                pairs.setdefault(name[: -len(suffix)] + "weight", {})[part] = tensor.float()
                break
        else:
            plain[name] = tensor.float()
    for name, pair in pairs.items():
        if set(pair) != {"g", "v"}:
            raise FormatError(f"{path}: {name} has only the {', '.join(pair)} half of its weight norm")
        v = pair["v"]
        norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))
        plain[name] = pair["g"] * v / norm
    return plain
