"""`speechtok train hubert | ctc`: HuBERT pre-training on `hubert-labels` targets, and CTC
fine-tuning on transcripts; both resumable."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import InputError
from .common import DEVICE, QUIET, boundary, err, quiet_transformers, say

train_app = typer.Typer(help="Train the models tokens come from: HuBERT pre-training, CTC fine-tuning.",
                        no_args_is_help=True)


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
    with _progress("train hubert", max_steps, quiet, "masked acc {masked_accuracy:.3f}") as on_step:
        result = run(model, train_split, valid_split, settings, out, device=device, description=description,
                     on_step=on_step)
    if not quiet:
        resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from else ""
        say(f"train hubert: {result.step} steps{resumed}; loss {result.last.get('loss', float('nan')):.4f}; "
            f"model in {result.final} (use it with: speechtok hubert-labels --encoder {result.final} --layers 6 ...)")


@train_app.command("ctc")
@boundary
def train_ctc(
    train: Path = typer.Option(..., help="Train split: a fairseq .tsv (root line, then path<TAB>num_samples; 16 kHz audio)."),
    train_text: Optional[Path] = typer.Option(None, help="Its transcripts, a line per utterance: fairseq letters (.ltr, `|` ends a word) or words (.wrd). Default: the .tsv's .ltr."),
    valid: Optional[Path] = typer.Option(None, help="Valid split (.tsv): loss, CER and WER at every checkpoint."),
    valid_text: Optional[Path] = typer.Option(None, help="The valid split's transcripts (default: its .ltr)."),
    init: Optional[str] = typer.Option(None, help="The pre-trained encoder: hub id, transformers directory, original fairseq / WavLM checkpoint, or a `train hubert` run directory."),
    config: Optional[str] = typer.Option(None, "--config", help="Instead of --init: a random HuBERT of this architecture (base, small, tiny, or a JSON file), to compare against pre-training."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: run.json, checkpoints/, metrics.csv, final/ (the CTC model and its processor)."),
    max_steps: int = typer.Option(25_000, help="Optimizer steps (fairseq's HuBERT base_10h: 25k)."),
    lr: float = typer.Option(2e-5, help="Peak learning rate (Adam, betas 0.9/0.98; fairseq's base_10h: 2e-5)."),
    warmup_steps: Optional[int] = typer.Option(None, help="Linear warm-up steps, then linear decay to 0 (default: 10% of --max-steps)."),
    freeze_steps: Optional[int] = typer.Option(None, help="Steps at the start that train only the output layer (fairseq's freeze_finetune_updates; default: 40% of --max-steps, base_10h's 10k of 25k)."),
    batch_seconds: float = typer.Option(200.0, help="Audio per batch per process, in seconds, padding included (fairseq's max_tokens 3.2M samples)."),
    min_sample_seconds: float = typer.Option(0.25, help="Shorter utterances are left out (at least a time mask's 10 frames)."),
    max_sample_seconds: float = typer.Option(30.0, help="Longer utterances are left out (they are not cut: their transcripts could not be)."),
    mask_time_prob: float = typer.Option(0.75, help="SpecAugment: share of frames masked, in spans of 10 (fairseq's mask_prob)."),
    mask_channel_prob: float = typer.Option(0.5, help="SpecAugment: share of channels masked (fairseq's mask_channel_prob; spans of hidden_size / 12)."),
    layerdrop: float = typer.Option(0.1, help="Probability of skipping each transformer layer in a step."),
    update_freq: int = typer.Option(1, help="Batches per optimizer step (gradient accumulation)."),
    clip_norm: float = typer.Option(0.0, help="Gradient norm clipping (0: none, as fairseq's base_10h)."),
    checkpoint_every: int = typer.Option(1000, help="Steps between checkpoints and valid scores (also at the end and on SIGTERM / SIGINT)."),
    seed: int = typer.Option(0, help="Seed of the output layer, batches, masks and dropout."),
    device: str = DEVICE,
    quiet: bool = QUIET,
):
    """Fine-tune a pre-trained encoder for speech recognition with CTC on transcripts (*ForCTC, feature encoder frozen).

    The vocabulary is the training text's characters; RUN_DIR/final/ is a transformers *ForCTC directory with its processor: `speechtok eval asr RUN_DIR/final TEST.tsv TEST.ltr` scores it. Re-running the same command resumes from the newest checkpoint; under torchrun every process takes its share of the batches (DDP)."""
    quiet_transformers()
    import torch

    from ..train import TrainConfig
    from ..train.ctc import character_vocabulary, ctc_model
    from ..train.ctc import train_ctc as run
    from ..train.data import read_transcribed

    torch.manual_seed(seed)  # the output layer's initial weights too: the same command gives the same run
    train_split = read_transcribed(train, train_text or train.with_suffix(".ltr"))
    valid_split = read_transcribed(valid, valid_text or valid.with_suffix(".ltr")) if valid is not None else None
    vocabulary = character_vocabulary(train_split.letters)
    settings = {"mask_time_prob": mask_time_prob, "mask_feature_prob": mask_channel_prob, "layerdrop": layerdrop}
    model, extractor, source = ctc_model(vocabulary, init, config, settings)
    freeze = round(0.4 * max_steps) if freeze_steps is None else freeze_steps
    training = TrainConfig(max_steps=max_steps, lr=lr, warmup_steps=max(1, round(0.1 * max_steps)) if warmup_steps is None
                           else warmup_steps, weight_decay=0.0, eps=1e-8, clip_norm=clip_norm, batch_seconds=batch_seconds,
                           min_sample_seconds=min_sample_seconds, max_sample_seconds=max_sample_seconds,
                           update_freq=update_freq, checkpoint_every=checkpoint_every, seed=seed)
    description = {"train_manifest": str(train.resolve()), "valid_manifest": None if valid is None else str(valid.resolve()),
                   "init": source, "config": config}
    with _progress("train ctc", max_steps, quiet, "") as on_step:
        result = run(model, vocabulary, extractor, train_split, valid_split, training, out, freeze_steps=freeze,
                     device=device, description=description, on_step=on_step)
    if not quiet:
        resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from else ""
        say(f"train ctc: {result.step} steps{resumed}; loss {result.last.get('loss', float('nan')):.4f}; "
            f"model in {result.final} (score it with: speechtok eval asr {result.final} TEST.tsv TEST.ltr)")


@contextmanager
def _progress(name: str, steps: int, quiet: bool, extra: str) -> Iterator[Callable[[dict], None]]:
    """A rich bar over the optimizer steps with the loss, `extra` (formatted with the step's
    metrics), the learning rate and audio hours per second; yields the loop's `on_step`."""
    bar = Progress(TextColumn(name), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                   TimeRemainingColumn(), console=err, disable=quiet)
    with bar:
        task = bar.add_task("steps", total=steps, info="")

        def on_step(m: dict) -> None:
            rate = m["audio_seconds"] / max(m["seconds"], 1e-9) / 3600
            bar.update(task, completed=m["step"], info=f"loss {m['loss']:.3f}  {extra.format(**m)}  lr {m['lr']:.2e}  "
                                                       f"{rate:.4f} h audio/s")

        yield on_step


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
