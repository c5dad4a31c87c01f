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


def wavlm_model(directory: Path, quick: bool = False):
    """A random WavLM-large-shaped model (24 blocks x 1024; `quick`: 12 x 256) saved like a hub
    checkpoint in `directory`, with fairseq/SpeechBrain's waveform normalisation; its config."""
    import torch
    from transformers import AutoModel, Wav2Vec2FeatureExtractor, WavLMConfig

    big = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    small = dict(hidden_size=256, num_hidden_layers=12, num_attention_heads=4, intermediate_size=1024)
    config = WavLMConfig(**(small if quick else big), feat_extract_norm="layer", do_stable_layer_norm=True,
                         conv_bias=True)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(directory)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(directory)
    return config


def speech(seconds: float, count: int, sr: int = 16000) -> list[np.ndarray]:
    """`count` clips of exactly `seconds` of example speech (espeak-ng when installed)."""
    import speechtok
    from speechtok.example_audio import write_example_audio

    with tempfile.TemporaryDirectory() as tmp:
        files = write_example_audio(tmp, count=count * 3)
        joined = np.concatenate([speechtok.load_audio(f, sr) for f in files])
    step = len(joined) // count
    return [np.resize(joined[i * step : (i + 1) * step], int(seconds * sr)).astype(np.float32) for i in range(count)]
