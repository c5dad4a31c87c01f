"""A random unit HiFi-GAN laid out as SpeechBrain's `UnitHifiganGenerator`, for checkpoint tests.

Written from SpeechBrain's documented behaviour (speechbrain.lobes.models.HifiGAN,
speechbrain.nnet.CNN): every convolution wrapped as `<name>.conv`, weight-normed; "same" convs pad
by reflection; transposed convs pad (k - u) // 2; codebook embeddings pooled by attention; unit
inference runs the generator without padding. Its state_dict has SpeechBrain's key names and its
`inference` gives the audio a converted checkpoint must reproduce.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _wn(layer: nn.Module, parametrized: bool) -> nn.Module:
    return nn.utils.parametrizations.weight_norm(layer) if parametrized else nn.utils.weight_norm(layer)


class SBConv1d(nn.Module):
    def __init__(self, cin, cout, k, dilation=1, bias=True, parametrized=False):
        super().__init__()
        self.conv = _wn(nn.Conv1d(cin, cout, k, dilation=dilation, bias=bias), parametrized)
        self.pad = (dilation * (k - 1)) // 2

    def forward(self, x):
        return self.conv(F.pad(x, (self.pad, self.pad), mode="reflect"))


class SBConvTranspose1d(nn.Module):
    def __init__(self, cin, cout, k, u, parametrized=False):
        super().__init__()
        self.conv = _wn(nn.ConvTranspose1d(cin, cout, k, stride=u, padding=(k - u) // 2), parametrized)

    def forward(self, x):
        return self.conv(x)


class SBResBlock1(nn.Module):
    def __init__(self, ch, k, dilations, parametrized):
        super().__init__()
        self.convs1 = nn.ModuleList(SBConv1d(ch, ch, k, d, parametrized=parametrized) for d in dilations)
        self.convs2 = nn.ModuleList(SBConv1d(ch, ch, k, 1, parametrized=parametrized) for _ in dilations)

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = c1(F.leaky_relu(x, 0.1))
            x = c2(F.leaky_relu(xt, 0.1)) + x
        return x


class SBUnitHifiganGenerator(nn.Module):
    def __init__(self, vocab_size=6001, embedding_dim=1024, attn_dim=128, upsample_initial_channel=512,
                 upsample_factors=(5, 4, 4, 2, 2), upsample_kernel_sizes=(11, 8, 8, 4, 4),
                 resblock_kernel_sizes=(3, 7, 11), resblock_dilation_sizes=((1, 3, 5),) * 3, parametrized=False):
        super().__init__()
        p = parametrized
        self.num_kernels = len(resblock_kernel_sizes)
        self.conv_pre = SBConv1d(embedding_dim, upsample_initial_channel, 7, parametrized=p)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (u, k) in enumerate(zip(upsample_factors, upsample_kernel_sizes)):
            ch = upsample_initial_channel // 2 ** (i + 1)
            self.ups.append(SBConvTranspose1d(ch * 2, ch, k, u, parametrized=p))
            for rk, rd in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(SBResBlock1(ch, rk, rd, p))
        self.conv_post = SBConv1d(ch, 1, 7, parametrized=p)
        self.unit_embedding = nn.Embedding(vocab_size, embedding_dim)
        self.attn_pooling = nn.Sequential(nn.Linear(embedding_dim, attn_dim), nn.ReLU(), nn.Linear(attn_dim, 1, bias=False))
        with torch.no_grad():  # g away from |v| (its value at init), so folding must use both
            for name, param in self.named_parameters():
                if name.endswith(("weight_g", "original0")):
                    param.mul_(torch.rand_like(param) + 0.5)

    @torch.no_grad()
    def inference(self, x):
        """ids [B, T, C] -> [B, 1, T * hop]"""
        x = self.unit_embedding(x)
        b, t, c, e = x.shape
        flat = x.view(b * t, c, e)
        weights = F.softmax(self.attn_pooling(flat), dim=1)
        x = (flat * weights).sum(dim=1).view(b, t, e).transpose(1, 2)
        o = self.conv_pre(x)
        for i, up in enumerate(self.ups):
            o = up(F.leaky_relu(o, 0.1))
            z = None
            for j in range(self.num_kernels):
                r = self.resblocks[i * self.num_kernels + j](o)
                z = r if z is None else z + r
            o = z / self.num_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(o)))


HYPERPARAMS = """\
# written like the published hifigan-*-k1000-LibriTTS hyperparams (HyperPyYAML)
sample_rate: 16000
layer: [1, 3, 7, 12, 18, 23]
vocab_size: {vocab_size}
embedding_dim: {embedding_dim}
in_channels: !ref <embedding_dim>
attn_dim: 128
resblock_type: "1"
resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
resblock_kernel_sizes: [3, 7, 11]
upsample_kernel_sizes: [11, 8, 8, 4, 4]
upsample_initial_channel: {channels}
upsample_factors: [5, 4, 4, 2, 2]
inference_padding: 5
cond_channels: 0
conv_post_bias: True
duration_predictor: False
multi_speaker: False

generator: !new:speechbrain.lobes.models.HifiGAN.UnitHifiganGenerator
  in_channels: !ref <in_channels>
  out_channels: 1
  resblock_type: !ref <resblock_type>
  resblock_dilation_sizes: !ref <resblock_dilation_sizes>
  resblock_kernel_sizes: !ref <resblock_kernel_sizes>
  upsample_kernel_sizes: !ref <upsample_kernel_sizes>
  upsample_initial_channel: !ref <upsample_initial_channel>
  upsample_factors: !ref <upsample_factors>
  inference_padding: !ref <inference_padding>
  cond_channels: !ref <cond_channels>
  conv_post_bias: !ref <conv_post_bias>
  vocab_size: !ref <vocab_size>
  embedding_dim: !ref <embedding_dim>
  attn_dim: !ref <attn_dim>
  duration_predictor: !ref <duration_predictor>
  multi_speaker: !ref <multi_speaker>

modules:
  generator: !ref <generator>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
  loadables:
    generator: !ref <generator>
"""


def write_repo(directory, vocab_size=6001, embedding_dim=1024, channels=512, parametrized=False, seed=0):
    """A SpeechBrain vocoder repo directory; returns the reference network."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = SBUnitHifiganGenerator(vocab_size, embedding_dim, upsample_initial_channel=channels,
                                 parametrized=parametrized).eval()
    torch.save(net.state_dict(), directory / "generator.ckpt")
    (directory / "hyperparams.yaml").write_text(
        HYPERPARAMS.format(vocab_size=vocab_size, embedding_dim=embedding_dim, channels=channels))
    return net
