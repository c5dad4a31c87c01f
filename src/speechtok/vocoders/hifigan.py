"""The unit HiFi-GAN generator: unit ids -> embedding (pooled over codebooks) -> HiFi-GAN V1/V2.

One network for both published families, written from the HiFi-GAN paper and the behaviour the
checkpoints were trained with:
- SpeechBrain's `UnitHifiganGenerator` (hifigan-*-k1000-LibriTTS): several codebooks per frame,
  their embeddings pooled by attention (Linear -> ReLU -> Linear(1) -> softmax over codebooks);
  every "same" convolution pads by reflection (SpeechBrain's Conv1d default).
- fairseq / textlesslib `CodeHiFiGANVocoder`: one unit per frame, zero padding.

Parameter names follow SpeechBrain's (each convolution under `.conv`), so its checkpoints load as
they are after weight norm is folded; fairseq's names are mapped in `vocoders.fairseq`. Weights are
plain (folded), as both tools' inference uses them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError

LRELU_SLOPE = 0.1


@dataclass
class HifiGANConfig:
    """What shapes the network (names as in SpeechBrain's hyperparams.yaml)."""

    vocab_size: int
    embedding_dim: int
    upsample_factors: list[int] = field(default_factory=lambda: [5, 4, 4, 2, 2])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [11, 8, 8, 4, 4])
    upsample_initial_channel: int = 512
    resblock_type: str = "1"
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5]] * 3)
    conv_post_bias: bool = True
    pooling: str = "attention"  # over codebooks: "attention", "sum" or "none" (one codebook)
    attn_dim: int = 128
    padding_mode: str = "reflect"  # SpeechBrain: reflect; fairseq: zeros
    duration_predictor: bool = False
    var_pred_hidden_dim: int = 128
    var_pred_kernel_size: int = 3
    duration_layer_norm: bool = False  # fairseq's predictor normalises after each conv; SpeechBrain's does not
    num_speakers: int = 0  # fairseq multi-speaker: a speaker embedding joins each frame's embedding

    @property
    def hop(self) -> int:
        """Output samples per unit frame."""
        return math.prod(self.upsample_factors)

    def to_dict(self) -> dict:
        return asdict(self)


class SameConv(nn.Module):
    """A stride-1 Conv1d padded to keep the length (d * (k - 1) / 2 each side), under `.conv`."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int = 1, bias: bool = True,
                 padding_mode: str = "reflect"):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, dilation=dilation, bias=bias)
        self.pad = dilation * (kernel - 1) // 2
        self.mode = "constant" if padding_mode == "zeros" else padding_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.pad, self.pad), mode=self.mode))


class Upsample(nn.Module):
    """ConvTranspose1d by `factor` with padding (k - factor) / 2: exactly `factor` x longer."""

    def __init__(self, cin: int, cout: int, kernel: int, factor: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(cin, cout, kernel, stride=factor, padding=(kernel - factor) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ResBlock(nn.Module):
    """HiFi-GAN's residual block: type "1" (two convs per dilation) or "2" (one)."""

    def __init__(self, channels: int, kernel: int, dilations: list[int], kind: str, padding_mode: str):
        super().__init__()
        self.kind = kind

        def conv(d: int) -> SameConv:
            return SameConv(channels, channels, kernel, d, padding_mode=padding_mode)

        if kind == "1":
            self.convs1 = nn.ModuleList(conv(d) for d in dilations)
            self.convs2 = nn.ModuleList(conv(1) for _ in dilations)
        else:
            self.convs = nn.ModuleList(conv(d) for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "1":
            for c1, c2 in zip(self.convs1, self.convs2):
                x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        else:
            for c in self.convs:
                x = x + c(F.leaky_relu(x, LRELU_SLOPE))
        return x

    def reach(self) -> int:
        """Input steps one output sees on each side."""
        convs = [*self.convs1, *self.convs2] if self.kind == "1" else list(self.convs)
        return sum(c.pad for c in convs)


class DurationPredictor(nn.Module):
    """Log-duration per unit (FastSpeech2's variance predictor, as both tools use it; fairseq's
    with a LayerNorm after each conv)."""

    def __init__(self, dim: int, hidden: int, kernel: int, padding_mode: str, layer_norm: bool):
        super().__init__()
        self.conv1 = nn.Sequential(SameConv(dim, hidden, kernel, padding_mode=padding_mode), nn.ReLU())
        self.conv2 = nn.Sequential(SameConv(hidden, hidden, kernel, padding_mode=padding_mode), nn.ReLU())
        self.ln1 = nn.LayerNorm(hidden) if layer_norm else nn.Identity()
        self.ln2 = nn.LayerNorm(hidden) if layer_norm else nn.Identity()
        self.proj = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D, T] -> [B, T] log(duration + 1)."""
        x = self.ln1(self.conv1(x).transpose(1, 2)).transpose(1, 2)
        x = self.ln2(self.conv2(x).transpose(1, 2))
        return self.proj(x).squeeze(-1)


class UnitHifiGAN(nn.Module):
    """ids [B, T, C] (C codebooks; ids with offsets as the checkpoint was trained) -> audio [B, T*hop]."""

    def __init__(self, config: HifiGANConfig):
        super().__init__()
        self.config = config
        c = config
        self.unit_embedding = nn.Embedding(c.vocab_size, c.embedding_dim)
        if c.pooling == "attention":
            self.attn_pooling = nn.Sequential(nn.Linear(c.embedding_dim, c.attn_dim), nn.ReLU(),
                                              nn.Linear(c.attn_dim, 1, bias=False))
        if c.duration_predictor:
            self.var_predictor = DurationPredictor(c.embedding_dim, c.var_pred_hidden_dim, c.var_pred_kernel_size,
                                                   c.padding_mode, c.duration_layer_norm)
        if c.num_speakers:
            self.speaker_embedding = nn.Embedding(c.num_speakers, c.embedding_dim)
        in_dim = c.embedding_dim * (2 if c.num_speakers else 1)
        self.conv_pre = SameConv(in_dim, c.upsample_initial_channel, 7, padding_mode=c.padding_mode)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (factor, kernel) in enumerate(zip(c.upsample_factors, c.upsample_kernel_sizes)):
            channels = c.upsample_initial_channel // 2 ** (i + 1)
            self.ups.append(Upsample(channels * 2, channels, kernel, factor))
            for k, d in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes):
                self.resblocks.append(ResBlock(channels, k, d, c.resblock_type, c.padding_mode))
        self.conv_post = SameConv(channels, 1, 7, bias=c.conv_post_bias, padding_mode=c.padding_mode)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, T, C] ids -> [B, D, T], the codebooks pooled."""
        u = self.unit_embedding(ids)
        if self.config.pooling == "attention":
            u = (u * F.softmax(self.attn_pooling(u), dim=2)).sum(dim=2)
        elif self.config.pooling == "sum":
            u = u.sum(dim=2)
        else:
            u = u[:, :, 0]
        return u.transpose(1, 2)

    def predict_durations(self, ids: torch.Tensor) -> torch.Tensor:
        """Frames per unit, [B, T] (rounded exp(log_dur) - 1, at least 1: as both tools do)."""
        log_dur = self.var_predictor(self.embed(ids))
        return torch.clamp(torch.round(torch.exp(log_dur) - 1).long(), min=1)

    def generate(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D, T] embeddings -> [B, T * hop] audio."""
        x = self.conv_pre(x)
        per_stage = len(self.config.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * per_stage : (i + 1) * per_stage]
            x = sum(block(x) for block in blocks) / per_stage
        return torch.tanh(self.conv_post(F.leaky_relu(x)))[:, 0]

    def forward(self, ids: torch.Tensor, speaker: int | None = None) -> torch.Tensor:
        x = self.embed(ids)
        if self.config.num_speakers:
            if speaker is None or not 0 <= speaker < self.config.num_speakers:
                raise InputError(f"this vocoder has {self.config.num_speakers} speakers; pass speaker=0..."
                                 f"{self.config.num_speakers - 1}")
            voice = self.speaker_embedding.weight[speaker][None, :, None].expand(x.shape[0], -1, x.shape[2])
            x = torch.cat([x, voice], dim=1)  # fairseq: the speaker's embedding repeated over frames
        return self.generate(x)

    def reach(self) -> int:
        """Unit frames one output sample can see on each side (the window context for exact
        windowed decoding): each layer's reach in its own steps, over the steps per frame."""
        reach, steps = self.conv_pre.pad, 1  # steps: positions per unit frame at this layer
        per_stage = len(self.config.resblock_kernel_sizes)
        for i, (up, factor) in enumerate(zip(self.ups, self.config.upsample_factors)):
            reach += math.ceil(up.conv.kernel_size[0] / factor) / steps
            steps *= factor
            blocks = self.resblocks[i * per_stage : (i + 1) * per_stage]
            reach += max(b.reach() for b in blocks) / steps
        reach += self.conv_post.pad / steps
        return math.ceil(reach)
