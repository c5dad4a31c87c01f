"""Long inputs in overlapping windows, and windows in equal-length batches.

A sequence (audio samples to encode, or frames to decode) is cut into cores of `core` steps; each
core is run with up to `left` / `right` steps of context around it and only the core's part of the
output is kept. With context at least the network's receptive field, the kept output is exactly
what the whole sequence gives, and memory depends on the window, not on the file.

Batches hold windows of one length only: padding a shorter input would change what its last
outputs see (the codecs have no padding masks that reach every layer), so equal lengths are what
makes a batch give the same result as one window at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby


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


def plan(item: int, length: int, core: int, left: int, right: int) -> list[Window]:
    """Windows covering [0, length) in cores of `core` steps (the last one shorter), each with up
    to `left` steps before and `right` after (fewer at the sequence's ends)."""
    if core <= 0:
        raise ValueError("window core must be positive")
    windows = []
    for core_start in range(0, max(length, 1), core):
        core_stop = min(core_start + core, length)
        windows.append(Window(item, max(0, core_start - left), min(length, core_stop + right), core_start, core_stop))
    return windows


def batches(windows: list[Window], max_batch_steps: int) -> list[list[Window]]:
    """Windows grouped by exact length, each batch within `max_batch_steps` input steps (at least
    one window per batch). Longest first, so a too-large batch fails early."""
    ordered = sorted(windows, key=lambda w: (-w.length, w.item, w.start))
    out = []
    for length, group in groupby(ordered, key=lambda w: w.length):
        group = list(group)
        size = max(1, max_batch_steps // max(length, 1))
        out.extend(group[i : i + size] for i in range(0, len(group), size))
    return out
