"""Device policy: how much audio a batch holds by default, how many CPU threads small work gets,
and which dtype names mean what."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from ..errors import InputError

# Seconds of padded audio per batch; 0 = one utterance (window) per batch. On a GPU big batches keep
# the device busy; on a CPU one utterance already fills every core, and padding plus activations
# that overflow the caches only cost: 200 s batches ran 2.4x and 10 s batches 6% slower than one
# file at a time (WavLM-large, 2-core CPU; see docs/benchmarks.md).
DEFAULT_BATCH_SECONDS = {"cuda": 200.0, "cpu": 0.0}

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def resolve_device(device: torch.device | str) -> torch.device:
    """A torch device from a name ("cpu", "cuda", "cuda:1"), refused with a reason when this torch
    cannot use it (a misspelling, or cuda with a CPU-only build or no visible GPU)."""
    resolved = _parse(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r}: this torch ({torch.__version__}) sees no CUDA GPU "
                         "(a CPU-only build, or no GPU visible to this process); use --device cpu")
    return resolved


def _parse(device: torch.device | str) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InputError(f"unknown device {device!r} ({error}); use cpu, cuda or cuda:N") from None


def default_batch_seconds(device: torch.device | str) -> float:
    return DEFAULT_BATCH_SECONDS.get(_parse(device).type, DEFAULT_BATCH_SECONDS["cuda"])


def batch_seconds(given: float | None, device: torch.device | str) -> float:
    """`given` (0 is a choice: one item per batch), or the device's default when None."""
    return default_batch_seconds(device) if given is None else float(given)


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """A torch dtype from its name (float32 / bfloat16 / float16, or fp32 / bf16 / fp16)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise InputError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}") from None


@contextmanager
def torch_threads(count: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block with `count` torch threads when it computes on the CPU (None, or another
    device: as it is), and restore the number after. For stages whose every call is small work
    (an MFCC frame block, the k-means assignment of one short file): there, synchronising torch's
    thread pool costs more than the work (6-12 ms per short file with 2 threads on a loaded
    2-core machine, 0.04 ms with 1), and the other cores are better left to the reader threads."""
    if count is None or _parse(device).type != "cpu" or count == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)

