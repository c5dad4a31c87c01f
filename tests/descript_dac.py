"""A random DAC built the way Descript's `dac` package lays it out, for checkpoint tests.

Written from the published architecture (DAC paper; descript-audio-codec 1.0.0 module layout):
every convolution weight-normed, `encoder.block` = [conv, EncoderBlock..., Snake, conv],
`decoder.model` = [conv, DecoderBlock..., Snake, conv, Tanh], each block's layers in a `.block`
Sequential. Its state_dict therefore has Descript's key names, and its own forward gives the codes
and audio a checkpoint in that layout must reproduce after conversion.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def weight_normed(layer: nn.Module, speechbrain: bool) -> nn.Module:
    """Descript: torch's original weight_norm (weight_g / weight_v); SpeechBrain's DAC lobe: the
    parametrization (parametrizations.weight.original0 / original1)."""
    if speechbrain:
        return nn.utils.parametrizations.weight_norm(layer)
    return nn.utils.weight_norm(layer)


class Snake(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.rand(1, channels, 1) + 0.5)

    def forward(self, x):
        return x + torch.sin(self.alpha * x) ** 2 / (self.alpha + 1e-9)


class Residual(nn.Module):
    def __init__(self, dim: int, dilation: int, sb: bool):
        super().__init__()
        self.block = nn.Sequential(
            Snake(dim), weight_normed(nn.Conv1d(dim, dim, 7, dilation=dilation, padding=3 * dilation), sb),
            Snake(dim), weight_normed(nn.Conv1d(dim, dim, 1), sb),
        )

    def forward(self, x):
        return x + self.block(x)


class Wrapped(nn.Module):
    def __init__(self, *layers):
        super().__init__()
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        return self.block(x)


class DescriptDAC(nn.Module):
    def __init__(self, encoder_dim=4, encoder_rates=(2, 4, 5, 8), decoder_dim=32, n_codebooks=4,
                 codebook_size=64, codebook_dim=4, sample_rate=16000, speechbrain=False):
        super().__init__()
        sb = speechbrain
        self.kwargs = dict(encoder_dim=encoder_dim, encoder_rates=list(encoder_rates), latent_dim=None,
                           decoder_dim=decoder_dim, decoder_rates=list(encoder_rates)[::-1],
                           n_codebooks=n_codebooks, codebook_size=codebook_size, codebook_dim=codebook_dim,
                           quantizer_dropout=0.0, sample_rate=sample_rate)
        self.hop = math.prod(encoder_rates)
        d = encoder_dim
        enc = [weight_normed(nn.Conv1d(1, d, 7, padding=3), sb)]
        for s in encoder_rates:
            enc.append(Wrapped(Residual(d, 1, sb), Residual(d, 3, sb), Residual(d, 9, sb), Snake(d),
                               weight_normed(nn.Conv1d(d, 2 * d, 2 * s, stride=s, padding=math.ceil(s / 2)), sb)))
            d *= 2
        latent = d
        enc += [Snake(d), weight_normed(nn.Conv1d(d, latent, 3, padding=1), sb)]
        self.encoder = nn.Module()
        self.encoder.block = nn.Sequential(*enc)
        self.quantizer = nn.Module()
        self.quantizer.quantizers = nn.ModuleList()
        for _ in range(n_codebooks):
            q = nn.Module()
            q.in_proj = weight_normed(nn.Conv1d(latent, codebook_dim, 1), sb)
            q.out_proj = weight_normed(nn.Conv1d(codebook_dim, latent, 1), sb)
            q.codebook = nn.Embedding(codebook_size, codebook_dim)
            self.quantizer.quantizers.append(q)
        dec = [weight_normed(nn.Conv1d(latent, decoder_dim, 7, padding=3), sb)]
        for i, s in enumerate(self.kwargs["decoder_rates"]):
            cin, cout = decoder_dim // 2**i, decoder_dim // 2 ** (i + 1)
            dec.append(Wrapped(Snake(cin), weight_normed(nn.ConvTranspose1d(cin, cout, 2 * s, stride=s,
                                                                            padding=math.ceil(s / 2)), sb),
                               Residual(cout, 1, sb), Residual(cout, 3, sb), Residual(cout, 9, sb)))
        dec += [Snake(cout), weight_normed(nn.Conv1d(cout, 1, 7, padding=3), sb), nn.Tanh()]
        self.decoder = nn.Module()
        self.decoder.model = nn.Sequential(*dec)
        with torch.no_grad():  # g away from |v| (its value at init), so folding must use both
            for name, p in self.named_parameters():
                if name.endswith(("weight_g", "original0")):
                    p.mul_(torch.rand_like(p) + 0.5)

    @torch.no_grad()
    def encode(self, audio: torch.Tensor, n_quantizers: int) -> torch.Tensor:
        """[B, T] -> [B, n, F], padding to the hop as Descript's preprocess does."""
        x = F.pad(audio, (0, (-audio.shape[-1]) % self.hop))[:, None]
        residual = self.encoder.block(x)
        codes = []
        for q in list(self.quantizer.quantizers)[:n_quantizers]:
            z = q.in_proj(residual)
            flat = F.normalize(z.transpose(1, 2).reshape(-1, z.shape[1]))
            index = (flat @ F.normalize(q.codebook.weight).T).argmax(1).view(z.shape[0], -1)  # cosine
            residual = residual - q.out_proj(q.codebook(index).transpose(1, 2))
            codes.append(index)
        return torch.stack(codes, 1)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        z = sum(q.out_proj(q.codebook(codes[:, i]).transpose(1, 2)) for i, q in enumerate(self.quantizer.quantizers)
                if i < codes.shape[1])
        return self.decoder.model(z)[:, 0]
