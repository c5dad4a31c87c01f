"""Shared bits of the benchmark scripts: machine description, timing, example speech."""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def median_time(fn, repeats: int) -> tuple[float, object]:
    """Median wall time of `repeats` runs (after one warm-up run) and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def interleaved_median_times(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Median wall time of each function over `repeats` rounds that run them in turn (after one
    warm-up round), so that a slow spell of a shared machine hits all alike; and last results."""
    results = {name: fn() for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, results


def speech(seconds: float, count: int, sr: int = 16000) -> list[np.ndarray]:
    """`count` clips of exactly `seconds` of example speech (espeak-ng when installed)."""
    import speechtok
    from speechtok.example_audio import write_example_audio

    with tempfile.TemporaryDirectory() as tmp:
        files = write_example_audio(tmp, count=count * 3)
        joined = np.concatenate([speechtok.load_audio(f, sr) for f in files])
    step = len(joined) // count
    return [np.resize(joined[i * step : (i + 1) * step], int(seconds * sr)).astype(np.float32) for i in range(count)]
