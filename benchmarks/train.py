"""Training throughput: `speechtok train hubert`'s loop against a by-the-book transformers + PyTorch
loop with the same model, batches and objective, in one process, rounds alternating.

The by-the-book loop is what one writes from transformers' documentation: a HubertModel with a
`final_proj` and label embeddings, soundfile to read and crop each utterance, transformers'
`_compute_mask_indices` for the mask, the model's own forward with `mask_time_indices`, cosine
logits / 0.1 and cross-entropy over masked frames (+ the feature penalty), AdamW and transformers'
warm-up schedule. It gets the same batch plan (utterance indices and crops) as speechtok.
speechtok's side is `train.train_hubert` with everything it does (data RNG, checkpoint at the end,
metrics.csv, final/). Reported: audio seconds trained per wall second, and the ratio.

    python benchmarks/train.py                   # tiny model, 60 steps, 3 rounds
    python benchmarks/train.py --config small --steps 20
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from common import machine
from transformers import HubertModel, get_polynomial_decay_schedule_with_warmup
from transformers.models.hubert.modeling_hubert import _compute_mask_indices

from speechtok.example_audio import timed_utterance
from speechtok.train import HubertPretraining, TrainConfig, hubert_config, read_split, train_hubert

SR = 16000
K = 100


def write_data(root: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    (root / "labels").mkdir()
    lines, labels = [str(root / "audio")], []
    for i in range(count):
        wave, _ = timed_utterance(rng, seconds=float(rng.uniform(3, 8)), sample_rate=SR)
        sf.write(root / "audio" / f"u{i:04d}.wav", wave, SR)
        lines.append(f"u{i:04d}.wav\t{len(wave)}")
        labels.append(" ".join(map(str, rng.integers(0, K, 1 + (len(wave) - 400) // 160))))
    (root / "train.tsv").write_text("\n".join(lines) + "\n")
    (root / "labels" / "train.km").write_text("\n".join(labels) + "\n")
    (root / "labels" / "dict.km.txt").write_text("".join(f"{k} 1\n" for k in range(K)))


def by_the_book(root: Path, config_name: str, settings: TrainConfig, steps: int) -> tuple[float, float]:
    """(seconds, audio seconds) of `steps` optimizer steps of the plain loop."""
    split = read_split(root / "train.tsv", root / "labels", 100.0)
    torch.manual_seed(0)
    config = hubert_config(config_name)
    model = HubertModel(config).train()
    final_proj = torch.nn.Linear(config.hidden_size, 256)
    label_embs = torch.nn.Parameter(torch.rand(K, 256))
    params = [*model.parameters(), *final_proj.parameters(), label_embs]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, betas=settings.betas, eps=settings.eps,
                                  weight_decay=settings.weight_decay)
    scheduler = get_polynomial_decay_schedule_with_warmup(optimizer, settings.warmup_steps, settings.max_steps)
    rng = np.random.default_rng(0)
    plan = settings.plan(split, np.random.default_rng([0, 0, 1]))  # speechtok's first epoch
    captured = []  # the conv features of each forward, for the penalty (not running the extractor twice)
    model.feature_extractor.register_forward_hook(lambda module, inputs, out: captured.append(out))
    audio = 0.0
    started = time.perf_counter()
    for step in range(steps):
        indices = plan[step % len(plan)]
        size = min(min(int(split.sizes[i]) for i in indices), settings.max_samples)
        audio += size * len(indices) / SR
        waves, targets = [], []
        for i in indices:
            wave, _ = sf.read(split.paths[i], dtype="float32")
            start = int(rng.integers(0, len(wave) - size + 1))
            waves.append(wave[start : start + size])
            targets.append(split.labels[i][round(start * 100 / SR) :][::2])  # 100 Hz labels at 50 Hz frames
        x = torch.from_numpy(np.stack(waves))
        frames = int(model._get_feat_extract_output_lengths(torch.tensor(size)))
        targets = torch.from_numpy(np.stack([t[:frames] for t in targets]))
        frames = targets.shape[1]
        mask = torch.from_numpy(_compute_mask_indices((len(indices), frames), 0.8, 10, min_masks=2))
        captured.clear()
        hidden = model(x, mask_time_indices=mask).last_hidden_state[:, :frames]
        penalty = captured[0].pow(2).mean()
        projected = final_proj(hidden[mask])
        logits = torch.cosine_similarity(projected[:, None, :], label_embs[None], dim=-1) / 0.1
        loss = torch.nn.functional.cross_entropy(logits, targets[mask]) + 10 * penalty
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.clip_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return time.perf_counter() - started, audio


def speechtok_loop(root: Path, config_name: str, settings: TrainConfig) -> tuple[float, float]:
    """(seconds, audio seconds) of `train_hubert` for settings.max_steps steps."""
    split = read_split(root / "train.tsv", root / "labels", 100.0)
    torch.manual_seed(0)
    model = HubertPretraining(hubert_config(config_name), K, 100.0)
    audio = []
    run = root / "run"
    shutil.rmtree(run, ignore_errors=True)
    started = time.perf_counter()
    train_hubert(model, split, None, settings, run, on_step=lambda m: audio.append(m["audio_seconds"]))
    return time.perf_counter() - started, sum(audio)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-seconds", type=float, default=16.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    write_data(root, 120)
    settings = TrainConfig(max_steps=args.steps, warmup_steps=max(1, args.steps // 10), batch_seconds=args.batch_seconds,
                           checkpoint_every=args.steps, min_sample_seconds=2.0)
    print(f"machine: {machine()}; {args.config} model, {args.steps} steps of <= {args.batch_seconds:g} s batches")
    ours, book = [], []  # audio seconds per wall second, each round
    for _ in range(args.rounds):
        seconds, audio = speechtok_loop(root, args.config, settings)
        ours.append(audio / seconds)
        seconds, audio = by_the_book(root, args.config, settings, args.steps)
        book.append(audio / seconds)
    mine, theirs = float(np.median(ours)), float(np.median(book))
    print(f"  by-the-book loop: {theirs:6.1f} audio s/s")
    print(f"  speechtok:        {mine:6.1f} audio s/s (with a checkpoint, metrics.csv, final/)")
    print(f"speechtok / by-the-book throughput: {mine / theirs:.2f}x")


if __name__ == "__main__":
    main()
