"""`speechtok train hubert`: HuBERT pre-training on `hubert-labels` targets, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import InputError
from .common import DEVICE, QUIET, boundary, err, quiet_transformers, say

train_app = typer.Typer(help="Train the models tokens come from: HuBERT pre-training.", no_args_is_help=True)


@train_app.command("hubert")
@boundary
def train_hubert(
    train: Path = typer.Option(..., help="Train split: a fairseq .tsv (root line, then path<TAB>num_samples; 16 kHz audio)."),
    valid: Optional[Path] = typer.Option(None, help="Valid split (.tsv): loss and masked accuracy at every checkpoint."),
    labels: Path = typer.Option(..., help="Label directory from `speechtok hubert-labels`: <split>.km per split, dict.km.txt, labels.json."),
    label_rate: Optional[float] = typer.Option(None, help="Labels per second (default: labels.json's; 100 for MFCC, 50 for SSL labels)."),
    config: Optional[str] = typer.Option(None, "--config", help="Architecture: base (fairseq's HuBERT base, the default), small, tiny, or a JSON file of HubertConfig fields."),
    init: Optional[str] = typer.Option(None, help="Start from this HuBERT model's weights (transformers directory or hub id) instead of a random one; its architecture is used."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: run.json, checkpoints/, metrics.csv, final/ (the trained model)."),
    max_steps: int = typer.Option(400_000, help="Optimizer steps (fairseq's base: 400k)."),
    lr: float = typer.Option(5e-4, help="Peak learning rate (AdamW, betas 0.9/0.98, weight decay 0.01)."),
    warmup_steps: Optional[int] = typer.Option(None, help="Linear warm-up steps, then linear decay to 0 (default: 8% of --max-steps, fairseq's 32k of 400k)."),
    batch_seconds: float = typer.Option(87.5, help="Audio per batch per process, in seconds after cropping (fairseq's max_tokens 1.4M samples)."),
    max_sample_seconds: float = typer.Option(15.625, help="Longer utterances are cropped to this (from a random start)."),
    min_sample_seconds: float = typer.Option(2.0, help="Shorter utterances are left out."),
    update_freq: int = typer.Option(1, help="Batches per optimizer step (gradient accumulation)."),
    clip_norm: float = typer.Option(10.0, help="Gradient norm clipping (0: none)."),
    checkpoint_every: int = typer.Option(1000, help="Steps between checkpoints (also written at the end and on SIGTERM / SIGINT)."),
    seed: int = typer.Option(0, help="Seed of the initialisation, batches, crops, masks and dropout."),
    device: str = DEVICE,
    quiet: bool = QUIET,
):
    """Pre-train HuBERT (masked prediction of k-means targets, as fairseq defines it) on transformers' HubertModel.

    Re-running the same command resumes from the newest checkpoint (model, optimizer, schedule, data position, random states). Under torchrun every process takes its share of the batches (DDP). RUN_DIR/final/ is a transformers model directory: give it to `speechtok hubert-labels --encoder RUN_DIR/final --layers 6 ...` for the next iteration's targets."""
    quiet_transformers()
    from ..train import HubertPretraining, TrainConfig, hubert_config, read_split
    from ..train import train_hubert as run
    from ..train.trainer import warmup_default

    if init is not None and config is not None:
        raise InputError("--init brings its own architecture: give --init or --config, not both")
    import torch

    torch.manual_seed(seed)  # the initial weights too: the same command gives the same run
    train_split = read_split(train, labels, label_rate)
    valid_split = read_split(valid, labels, train_split.label_rate) if valid is not None else None
    if init is not None:
        from transformers import HubertConfig, HubertModel

        from ..train.hubert import BASE_TRAINING

        pretrained = HubertModel.from_pretrained(init)
        # its architecture, with the pre-training dropout and masking settings (not a fine-tuned model's)
        architecture = HubertConfig(**{**pretrained.config.to_dict(), **BASE_TRAINING})
        model = HubertPretraining(architecture, train_split.num_classes, train_split.label_rate)
        missing, unexpected = model.hubert.load_state_dict(pretrained.state_dict(), strict=False)
        if unexpected or set(missing) - {"masked_spec_embed"}:
            raise InputError(f"{init}: its weights do not fit its own config (missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]})")
    else:
        model = HubertPretraining(hubert_config(config or "base"), train_split.num_classes, train_split.label_rate)
    settings = TrainConfig(max_steps=max_steps, lr=lr, warmup_steps=warmup_default(max_steps) if warmup_steps is None
                           else warmup_steps, batch_seconds=batch_seconds, max_sample_seconds=max_sample_seconds,
                           min_sample_seconds=min_sample_seconds, update_freq=update_freq, clip_norm=clip_norm,
                           checkpoint_every=checkpoint_every, seed=seed)
    description = {"train_manifest": str(train.resolve()), "valid_manifest": None if valid is None else str(valid.resolve()),
                   "labels": str(labels.resolve()), "init": init, "config": config}
    bar = Progress(TextColumn("train hubert"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                   TimeRemainingColumn(), console=err, disable=quiet)
    with bar:
        task = bar.add_task("steps", total=max_steps, info="")

        def on_step(m: dict) -> None:
            rate = m["audio_seconds"] / max(m["seconds"], 1e-9) / 3600
            bar.update(task, completed=m["step"], info=f"loss {m['loss']:.3f}  masked acc {m['masked_accuracy']:.3f}  "
                                                       f"lr {m['lr']:.2e}  {rate:.4f} h audio/s")

        result = run(model, train_split, valid_split, settings, out, device=device, description=description,
                     on_step=on_step)
    if not quiet:
        resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from else ""
        say(f"train hubert: {result.step} steps{resumed}; loss {result.last.get('loss', float('nan')):.4f}; "
            f"model in {result.final} (use it with: speechtok hubert-labels --encoder {result.final} --layers 6 ...)")


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
