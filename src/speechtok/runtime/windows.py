"""Long inputs in windows, windows in batches, results regrouped per input: the one batching loop.

A sequence (audio samples to encode, or frames to decode) is cut into cores of `core` steps; each
core is run with up to `left` / `right` steps of context around it and only the core's part of the
output is kept. With context at least the network's receptive field, the kept output is exactly
what the whole sequence gives, and memory depends on the window, not on the file. A chunk is a
window without context: the SSL encoders' independent pieces of long audio (fairseq's
`max_chunk`), whose outputs are simply concatenated.

Two ways to fill a batch:
- `equal_lengths=True`: windows of one exact length only. The codecs and vocoders have no padding
  mask that reaches every layer, so equal lengths are what makes a batch give each window what it
  would get alone.
- `equal_lengths=False`: windows sorted by length and padded to the longest, each batch's padded
  size (count x longest) within the budget; for encoders that mask their padding.

`run` applies a function to every batch and gives back, per sequence, its windows' results in
order. A batch that runs the device out of memory is run again in halves, down to one window, and
later batches keep to the size that fitted: results do not depend on batching, so only speed
changes. Knows nothing about models.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import groupby
from typing import Callable, Sequence, TypeVar

import torch

R = TypeVar("R")
log = logging.getLogger(__name__)
# torch.OutOfMemoryError since torch 2.5; torch.cuda.OutOfMemoryError before (the same class after)
OutOfMemoryError = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


@dataclass(frozen=True)
class Window:
    item: int  # which sequence of the call
    start: int  # the input run: [start, stop)
    stop: int
    core_start: int  # the part of it whose output is kept: [core_start, core_stop)
    core_stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def core_offset(self) -> int:
        """Where the core begins inside the window."""
        return self.core_start - self.start


def plan(item: int, length: int, core: int, left: int = 0, right: int = 0) -> list[Window]:
    """Windows covering [0, length) in cores of `core` steps (the last one shorter), each with up
    to `left` steps before and `right` after (fewer at the sequence's ends)."""
    if core <= 0:
        raise ValueError("window core must be positive")
    windows = []
    for core_start in range(0, max(length, 1), core):
        core_stop = min(core_start + core, length)
        windows.append(Window(item, max(0, core_start - left), min(length, core_stop + right), core_start, core_stop))
    return windows


def chunks(lengths: Sequence[int], chunk: int | None, min_length: int = 1) -> list[Window]:
    """Context-free windows of at most `chunk` steps (None: whole sequences). A trailing chunk
    shorter than `min_length` is dropped: it would give no output frame."""
    return [w for i, n in enumerate(lengths) for w in plan(i, n, chunk or max(n, 1)) if w.length >= min_length]


def batches(windows: Sequence[Window], max_batch_steps: int, *, equal_lengths: bool,
            max_batch_size: int | None = None) -> list[list[Window]]:
    """Windows grouped into batches of at most `max_batch_steps` padded steps (at least one window
    per batch), longest first, so a batch too large for the device fails early."""
    ordered = sorted(windows, key=lambda w: (-w.length, w.item, w.start))
    groups = [list(g) for _, g in groupby(ordered, key=lambda w: w.length)] if equal_lengths else [ordered]
    out: list[list[Window]] = []
    for group in groups:
        current: list[Window] = []
        for window in group:
            longest = current[0].length if current else window.length
            full = max_batch_size is not None and len(current) >= max_batch_size
            if current and (full or longest * (len(current) + 1) > max_batch_steps):
                out.append(current)
                current = []
            current.append(window)
        if current:
            out.append(current)
    return out


def run(windows: Sequence[Window], items: int, forward: Callable[[list[Window]], Sequence[R]],
        max_batch_steps: int, *, equal_lengths: bool, max_batch_size: int | None = None) -> list[list[R]]:
    """`forward(batch)` -> one result per window, for every batch; per item (0..items-1), the
    results of its windows in order. Only what `forward` returns is held, never a whole input's
    intermediate activations. Out-of-memory batches are split (module docstring)."""
    results: list[dict[int, R]] = [{} for _ in range(items)]
    fitting = _OutOfMemoryBackoff(forward)
    for batch in batches(windows, max_batch_steps, equal_lengths=equal_lengths, max_batch_size=max_batch_size):
        for window, out in zip(batch, fitting(batch), strict=True):
            results[window.item][window.core_start] = out
    return [[r[k] for k in sorted(r)] for r in results]


class _OutOfMemoryBackoff:
    """`forward` over a batch, in halves (recursively, down to one window) when the device runs
    out of memory; the size that fitted caps the batches after it."""

    def __init__(self, forward: Callable[[list[Window]], Sequence[R]]):
        self.forward = forward
        self.cap: int | None = None

    def __call__(self, batch: list[Window]) -> list[R]:
        cap = self.cap  # read once: running the first part may lower it
        if cap is not None and len(batch) > cap:
            return self(batch[:cap]) + self(batch[cap:])
        try:
            return list(self.forward(batch))
        except OutOfMemoryError:
            if len(batch) == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the failed batch's blocks, back for the halves
            self.cap = len(batch) // 2
            log.warning("out of memory on a batch of %d; running batches of at most %d", len(batch), self.cap)
            return self(batch)
