"""HuBERT's masked prediction on transformers' `HubertModel`, as fairseq defines it
(`fairseq/models/hubert/hubert.py`, `fairseq/criterions/hubert_criterion.py`):

    conv features (gradient scaled by `feature_grad_mult`; penalty: mean of their squares)
    -> layer norm + projection (transformers' `feature_projection`)
    -> frames at `mask` replaced by `masked_spec_embed`
    -> transformer -> `final_proj` to `final_dim`
    -> logits: cosine similarity with each of the K label embeddings, divided by `logit_temp`
    -> cross-entropy over masked frames (and, weighted `pred_nomask_weight`, unmasked ones)
       + `feature_pen_weight` x penalty

Targets come at the label rate (100 Hz for MFCC labels, 50 Hz for SSL ones); model frame t takes
label `round_down(t x label_rate / frame_rate)`, and frames beyond the labels are dropped, as
fairseq's `forward_targets` does. Masks are spans (the config's `mask_time_prob`,
`mask_time_length`, at least `mask_time_min_masks` spans: fairseq's mask_prob 0.8, length 10, 2 in
`BASE_TRAINING`) drawn by transformers' `_compute_mask_indices`, fairseq's span masking.

Where this departs from fairseq, knowingly: frames beyond an utterance's labels are left out of
that utterance's attention and loss (fairseq crops the whole batch to its shortest label
sequence; batches here are cropped to one audio length, so the two differ by a frame at most);
transformers' span masking draws its rounding once per batch and does not equalise mask counts
across rows (`require_same_masks`); the loss is averaged per batch (and across accumulated batches
and processes), where fairseq divides the summed loss by the whole update's masked-frame count.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor
from transformers.models.hubert.modeling_hubert import _compute_mask_indices

from .. import hub
from ..errors import InputError
from .data import SAMPLE_RATE, LabelledSplit, collate
from .seeding import numpy_drawn_from
from .trainer import TrainConfig, TrainResult, train


@dataclass(frozen=True)
class Objective:
    """fairseq's HuBERT base loss settings (hubert_base_librispeech.yaml and the model's defaults); the
    masking settings are the HubertConfig's (`mask_time_*`)."""

    final_dim: int = 256
    logit_temp: float = 0.1
    feature_grad_mult: float = 0.1
    pred_masked_weight: float = 1.0
    pred_nomask_weight: float = 0.0
    feature_pen_weight: float = 10.0

    def to_dict(self) -> dict:
        return asdict(self)


# fairseq's HuBERT base training settings, on top of transformers' HubertConfig defaults (which are
# HuBERT base's architecture: 12 x 768, 7 group-norm conv layers of 512)
BASE_TRAINING = {"layerdrop": 0.05, "hidden_dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.0,
                 "feat_proj_dropout": 0.1, "mask_time_prob": 0.8, "mask_time_length": 10, "mask_time_min_masks": 2}
ARCHITECTURES = {
    "base": {},
    "small": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 6, "intermediate_size": 1536,
              "conv_dim": (256,) * 7},
    # for CPUs and tests: minutes of speech, minutes of training
    "tiny": {"hidden_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 192,
             "conv_dim": (64,) * 7, "num_conv_pos_embeddings": 32, "num_conv_pos_embedding_groups": 4},
}


def hubert_config(name_or_file: str) -> HubertConfig:
    """A preset architecture (`base`, `small`, `tiny`) or a JSON file of HubertConfig fields, with
    fairseq's base training settings where the file does not set them."""
    if name_or_file in ARCHITECTURES:
        fields = ARCHITECTURES[name_or_file]
    else:
        path = Path(name_or_file)
        if not path.is_file():
            raise InputError(f"--config {name_or_file!r}: not one of {', '.join(ARCHITECTURES)} nor a JSON file")
        try:
            fields = json.loads(path.read_text())
        except ValueError as error:
            raise InputError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(fields, dict):
            raise InputError(f"{path}: expected a JSON object of HubertConfig fields")
    return HubertConfig(**{**BASE_TRAINING, **fields})


class GradMultiply(torch.autograd.Function):
    """The identity forward; the gradient multiplied by `scale` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


@dataclass
class HubertOutput:
    loss: torch.Tensor  # what is minimised: mean over predicted frames + the feature penalty term
    logits_masked: torch.Tensor  # [masked frames, K]
    targets_masked: torch.Tensor  # [masked frames]
    logits_unmasked: torch.Tensor
    targets_unmasked: torch.Tensor
    feature_penalty: torch.Tensor
    frames: int  # frames the loss is averaged over (fairseq's sample_size)

    @property
    def masked_accuracy(self) -> float:
        if not len(self.targets_masked):
            return float("nan")
        return float((self.logits_masked.argmax(-1) == self.targets_masked).float().mean())


class HubertPretraining(nn.Module):
    """A `HubertModel` with HuBERT's prediction head: `final_proj` and one embedding per target
    class. `hubert` is a plain transformers model: save it with `save_pretrained` and every
    speechtok encoder option takes it."""

    def __init__(self, config: HubertConfig, num_classes: int, label_rate: float,
                 objective: Objective | None = None):
        super().__init__()
        self.objective = objective or Objective()
        if config.mask_time_prob <= 0:
            raise InputError("HuBERT pre-training masks frames: the config needs mask_time_prob > 0 (fairseq: 0.8)")
        self.hubert = HubertModel(config)
        self.final_proj = nn.Linear(config.hidden_size, self.objective.final_dim)
        self.label_embs = nn.Parameter(torch.empty(num_classes, self.objective.final_dim))
        nn.init.uniform_(self.label_embs)  # fairseq's init of label_embs_concat
        self.num_classes, self.label_rate = num_classes, float(label_rate)
        self.conv_stride = int(np.prod(config.conv_stride))
        self.sample_rate = 16000

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.conv_stride

    def frames(self, num_samples: int) -> int:
        """Model frames of `num_samples` of audio."""
        return int(self.hubert._get_feat_extract_output_lengths(torch.tensor(num_samples)))

    def aligned_targets(self, labels: torch.Tensor, label_lengths: torch.Tensor,
                        frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, T'] targets at the model's frames, [B] how many of them are real) for [B, L]
        labels: frame t takes label floor(t x ratio), and T' = min(frames, labels / ratio) as in
        fairseq's `forward_targets` (per utterance here, where fairseq crops a batch to its shortest)."""
        ratio = self.label_rate / self.frame_rate
        usable = torch.floor(label_lengths.double() / ratio).long().clamp(max=frames)
        kept = int(usable.max()) if len(usable) else 0
        positions = (torch.arange(kept, dtype=torch.float32, device=labels.device) * ratio).long()
        positions = positions.clamp(max=max(labels.shape[1] - 1, 0))
        return labels[:, positions], usable

    def mask_for(self, frame_lengths: torch.Tensor, generator: np.random.Generator | None = None) -> torch.Tensor:
        """[B, T] span mask (transformers' `_compute_mask_indices`: fairseq's span masking),
        padding frames never masked. numpy's global RNG draws it unless `generator` (its state
        is set from it) is given."""
        batch, frames = len(frame_lengths), int(frame_lengths.max())
        attention = (torch.arange(frames)[None, :] < frame_lengths[:, None]).long()
        c = self.hubert.config
        with numpy_drawn_from(generator):
            mask = _compute_mask_indices((batch, frames), c.mask_time_prob, c.mask_time_length, attention_mask=attention,
                                         min_masks=c.mask_time_min_masks)
        return torch.from_numpy(mask) & attention.bool()

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor,
                label_lengths: torch.Tensor, mask: torch.Tensor) -> HubertOutput:
        """`input_values` [B, N] (zero-padded), `attention_mask` [B, N] (None: no padding),
        `labels` [B, L] raw label ids at the label rate (padded), `label_lengths` [B],
        `mask` [B, T] frames to mask (from `mask_for`)."""
        o = self.objective
        features = self.hubert.feature_extractor(input_values)  # [B, C, T]
        if o.feature_grad_mult != 1.0:
            features = GradMultiply.apply(features, o.feature_grad_mult)
        features = features.transpose(1, 2)
        frames = features.shape[1]
        targets, usable = self.aligned_targets(labels, label_lengths, frames)
        features = features[:, : targets.shape[1]]
        mask = mask[:, : targets.shape[1]]
        penalty = features.float().pow(2).mean()
        if attention_mask is not None:
            valid = self.hubert._get_feature_vector_attention_mask(frames, attention_mask)[:, : targets.shape[1]].bool()
        else:
            valid = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        valid &= torch.arange(targets.shape[1], device=features.device)[None, :] < usable[:, None]
        hidden = self.hubert.feature_projection(features)
        hidden = self.hubert._mask_hidden_states(hidden, mask_time_indices=mask & valid)
        # a bool mask (a long one reads as additive); none where every frame is real, as for one file
        encoded = self.hubert.encoder(hidden, attention_mask=None if bool(valid.all()) else valid)
        x = encoded[0]
        masked, unmasked = mask & valid, ~mask & valid
        logits_m = self.logits(x[masked])
        logits_u = self.logits(x[unmasked]) if o.pred_nomask_weight > 0 else x.new_zeros(0, self.num_classes)
        targ_m, targ_u = targets[masked], targets[unmasked] if o.pred_nomask_weight > 0 else targets.new_zeros(0)
        loss_m = nn.functional.cross_entropy(logits_m.float(), targ_m, reduction="sum")
        loss_u = nn.functional.cross_entropy(logits_u.float(), targ_u, reduction="sum") if len(targ_u) else 0.0
        size = (len(targ_m) if o.pred_masked_weight > 0 else 0) + (len(targ_u) if o.pred_nomask_weight > 0 else 0)
        size = max(size, 1)
        total = o.pred_masked_weight * loss_m + o.pred_nomask_weight * loss_u + o.feature_pen_weight * penalty * size
        return HubertOutput(total / size, logits_m, targ_m, logits_u, targ_u, penalty, size)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """[N, K]: cosine similarity of each projected frame with each label embedding / temperature."""
        projected = self.final_proj(x)
        return torch.cosine_similarity(projected.float()[:, None, :], self.label_embs.float()[None, :, :],
                                       dim=-1) / self.objective.logit_temp


class HubertTask:
    """HuBERT pre-training for the training loop (`trainer.train`): cropped, unpadded batches
    (`data.collate`), a fresh span mask per batch, masked-prediction loss; scored by valid loss
    and masked accuracy; handed off as a `HubertModel` directory."""

    train_fields = ("masked_accuracy",)
    valid_fields = ("valid_loss", "valid_masked_accuracy")

    def __init__(self, model: HubertPretraining):
        self.module = model
        # layers skipped by layerdrop leave parameters without gradients
        self.unused_parameters = model.hubert.config.layerdrop > 0

    def describe(self) -> dict:
        m = self.module
        return {"model": m.hubert.config.to_dict(), "objective": m.objective.to_dict(), "num_classes": m.num_classes,
                "label_rate": m.label_rate}

    def plan(self, split: LabelledSplit, config: TrainConfig, rng: np.random.Generator) -> list[list[int]]:
        return config.plan(split, rng)

    def collate(self, split: LabelledSplit, indices: list[int], config: TrainConfig, rng: np.random.Generator) -> dict:
        return collate(split, indices, config.max_samples, rng)

    def forward(self, wrapped: nn.Module, batch: dict, device: torch.device, rng: np.random.Generator) -> HubertOutput:
        model = self.module
        frames = model.frames(batch["input_values"].shape[1])
        mask = model.mask_for(torch.full((len(batch["labels"]),), frames), rng)
        return wrapped(batch["input_values"].to(device), None, batch["labels"].to(device),
                       batch["label_lengths"].to(device), mask.to(device))

    def loss(self, wrapped: nn.Module, batch: dict, device: torch.device, rng: np.random.Generator,
             step: int) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.forward(wrapped, batch, device, rng)
        return out.loss, {"correct": int((out.logits_masked.argmax(-1) == out.targets_masked).sum()),
                          "masked": len(out.targets_masked)}

    def step_metrics(self, counts: dict[str, float]) -> dict[str, float]:
        return {"masked_accuracy": counts["correct"] / counts["masked"] if counts["masked"] else float("nan")}

    def evaluate(self, split: LabelledSplit, config: TrainConfig, device: torch.device) -> dict[str, float]:
        """Masked-prediction loss and accuracy, with crops and masks of a fixed seed (the same
        every time, so values are comparable across checkpoints)."""
        model = self.module
        rng = np.random.default_rng([config.seed, 7])
        was_training = model.training
        model.eval()
        loss, frames, correct = 0.0, 0, 0
        with torch.no_grad():
            for indices in config.plan(split, rng):
                out = self.forward(model, collate(split, indices, config.max_samples, rng), device, rng)
                loss += float(out.loss) * out.frames
                frames += out.frames
                correct += int((out.logits_masked.argmax(-1) == out.targets_masked).sum())
        model.train(was_training)
        if not frames:
            return {"valid_loss": float("nan"), "valid_masked_accuracy": float("nan")}
        return {"valid_loss": loss / frames, "valid_masked_accuracy": correct / frames}

    def write_final(self, directory: Path) -> Path:
        """The encoder as a transformers directory (config, safetensors, feature extractor): what
        every `--encoder` option takes. Raw waveforms, as fairseq's HuBERT base is trained."""
        hub.loading_bars()  # transformers' "Writing model shards" bar, off when the command line's is on
        self.module.hubert.save_pretrained(directory)
        Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=False,
                                 return_attention_mask=False).save_pretrained(directory)
        return directory


def train_hubert(model: HubertPretraining, train_split: LabelledSplit, valid: LabelledSplit | None,
                 config: TrainConfig, run_dir: str | os.PathLike, **kwargs) -> TrainResult:
    """Pre-train `model` on `train_split`'s labels (`trainer.train`'s keyword arguments)."""
    if train_split.num_classes != model.num_classes or train_split.label_rate != model.label_rate:
        raise InputError(f"the model predicts {model.num_classes} classes at {model.label_rate:g} Hz; "
                         f"{train_split.name}'s labels have {train_split.num_classes} at {train_split.label_rate:g} Hz")
    if config.min_sample_seconds < 0.5:  # checked before the run is started
        raise InputError(f"min-sample-seconds must be at least 0.5 for masked prediction (a few masked spans); "
                         f"got {config.min_sample_seconds}")
    return train(HubertTask(model), train_split, valid, config, run_dir, **kwargs)
