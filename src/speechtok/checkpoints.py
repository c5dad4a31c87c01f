"""Reading other tools' PyTorch checkpoints safely, and folding their weight norm.

Checkpoints are pickles; they are read with `torch.load(weights_only=True)` (tensors and plain
containers only), so a file that would run code is refused. Weight norm comes in two forms,
torch's original (`weight_g` / `weight_v`) and the parametrization (`parametrizations.weight.
original0` / `original1`); both fold to w = g * v / |v|, the norm over all but the first dimension,
as `torch.nn.utils.weight_norm` computes it (dim=0) for Conv1d and ConvTranspose1d alike.
"""

from __future__ import annotations

from pathlib import Path

import torch

_WEIGHT_NORM = {"weight_g": "g", "weight_v": "v", "parametrizations.weight.original0": "g",
                "parametrizations.weight.original1": "v"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


def load_checkpoint(path: str | Path, what: str = "checkpoint") -> dict:
    """The dict a torch checkpoint holds, read without running code."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError...
        raise CheckpointError(f"{path}: not a loadable {what} ({type(error).__name__}: {error})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected a dict of weights, found {type(checkpoint).__name__}")
    return checkpoint


def fold_weight_norm(state: dict, path: str | Path = "checkpoint") -> dict[str, torch.Tensor]:
    """Plain float32 weights: every (g, v) pair folded into `weight`; other tensors as they are."""
    plain: dict[str, torch.Tensor] = {}
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: {name} is a {type(tensor).__name__}, not a tensor")
        for suffix, part in _WEIGHT_NORM.items():
            if name.endswith("." + suffix):
                pairs.setdefault(name[: -len(suffix)] + "weight", {})[part] = tensor.float()
                break
        else:
            plain[name] = tensor.float()
    for name, pair in pairs.items():
        if set(pair) != {"g", "v"}:
            raise CheckpointError(f"{path}: {name} has only the {', '.join(pair)} half of its weight norm")
        v = pair["v"]
        norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))
        plain[name] = pair["g"] * v / norm
    return plain
