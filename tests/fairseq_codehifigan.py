"""A random CodeHiFiGAN laid out as fairseq's `CodeGenerator`, for checkpoint tests.

Written from fairseq's documented behaviour (fairseq.models.text_to_speech.{hifigan,codehifigan},
fastspeech2.VariancePredictor): weight-normed convs padded with zeros, unit embedding `dict`,
optional duration predictor (conv -> ReLU -> LayerNorm, twice, then a linear) and speaker
embedding `spkr` concatenated to every frame.
"""

from __future__ import annotations

import json

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import weight_norm


class FSResBlock(nn.Module):
    def __init__(self, ch, k, dilations):
        super().__init__()
        self.convs1 = nn.ModuleList(weight_norm(nn.Conv1d(ch, ch, k, 1, dilation=d, padding=d * (k - 1) // 2))
                                    for d in dilations)
        self.convs2 = nn.ModuleList(weight_norm(nn.Conv1d(ch, ch, k, 1, padding=(k - 1) // 2)) for _ in dilations)

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2):
            x = c2(F.leaky_relu(c1(F.leaky_relu(x, 0.1)), 0.1)) + x
        return x


class FSDurationPredictor(nn.Module):
    def __init__(self, dim, hidden, k):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv1d(dim, hidden, k, padding=(k - 1) // 2), nn.ReLU())
        self.ln1 = nn.LayerNorm(hidden)
        self.conv2 = nn.Sequential(nn.Conv1d(hidden, hidden, k, padding=1), nn.ReLU())
        self.ln2 = nn.LayerNorm(hidden)
        self.proj = nn.Linear(hidden, 1)

    def forward(self, x):  # B x T x C -> B x T
        x = self.ln1(self.conv1(x.transpose(1, 2)).transpose(1, 2))
        x = self.ln2(self.conv2(x.transpose(1, 2)).transpose(1, 2))
        return self.proj(x).squeeze(2)


CONFIG = {
    "resblock": "1", "num_gpus": 0, "batch_size": 16, "learning_rate": 0.0002, "adam_b1": 0.8,
    "adam_b2": 0.99, "lr_decay": 0.999, "seed": 1234,
    "upsample_rates": [5, 4, 4, 2, 2], "upsample_kernel_sizes": [11, 8, 8, 4, 4],
    "upsample_initial_channel": 32, "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "num_embeddings": 100, "embedding_dim": 16, "model_in_dim": 16,
    "segment_size": 8960, "code_hop_size": 320, "f0": False, "num_mels": 80, "num_freq": 1025,
    "n_fft": 1024, "hop_size": 256, "win_size": 1024, "sampling_rate": 16000, "fmin": 0, "fmax": 8000,
    "dur_predictor_params": {"encoder_embed_dim": 16, "var_pred_hidden_dim": 16, "var_pred_kernel_size": 3,
                             "var_pred_dropout": 0.5},
}


class FSCodeGenerator(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch0 = cfg["upsample_initial_channel"]
        self.num_kernels = len(cfg["resblock_kernel_sizes"])
        self.conv_pre = weight_norm(nn.Conv1d(cfg["model_in_dim"], ch0, 7, 1, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (u, k) in enumerate(zip(cfg["upsample_rates"], cfg["upsample_kernel_sizes"])):
            self.ups.append(weight_norm(nn.ConvTranspose1d(ch0 // 2**i, ch0 // 2 ** (i + 1), k, u, padding=(k - u) // 2)))
            for rk, rd in zip(cfg["resblock_kernel_sizes"], cfg["resblock_dilation_sizes"]):
                self.resblocks.append(FSResBlock(ch0 // 2 ** (i + 1), rk, rd))
        self.conv_post = weight_norm(nn.Conv1d(ch0 // 2 ** len(self.ups), 1, 7, 1, padding=3))
        self.dict = nn.Embedding(cfg["num_embeddings"], cfg["embedding_dim"])
        self.multispkr = cfg.get("multispkr")
        if self.multispkr:
            self.spkr = nn.Embedding(cfg.get("num_speakers", 200), cfg["embedding_dim"])
        p = cfg.get("dur_predictor_params")
        self.dur_predictor = FSDurationPredictor(p["encoder_embed_dim"], p["var_pred_hidden_dim"],
                                                 p["var_pred_kernel_size"]) if p else None
        with torch.no_grad():
            for name, param in self.named_parameters():
                if name.endswith("weight_g"):
                    param.mul_(torch.rand_like(param) + 0.5)

    @torch.no_grad()
    def forward(self, code, dur_prediction=False, spkr=None):
        x = self.dict(code).transpose(1, 2)
        if dur_prediction:
            dur = torch.clamp(torch.round(torch.exp(self.dur_predictor(x.transpose(1, 2))) - 1).long(), min=1)
            x = torch.repeat_interleave(x, dur.view(-1), dim=2)
        if self.multispkr:
            x = torch.cat([x, self.spkr(spkr).transpose(1, 2).repeat(1, 1, x.shape[-1])], dim=1)
        x = self.conv_pre(x)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, 0.1))
            xs = None
            for j in range(self.num_kernels):
                r = self.resblocks[i * self.num_kernels + j](x)
                xs = r if xs is None else xs + r
            x = xs / self.num_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(x)))


def write_checkpoint(directory, **overrides):
    cfg = {**CONFIG, **overrides}
    torch.manual_seed(11)
    net = FSCodeGenerator(cfg).eval()
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"generator": net.state_dict(), "steps": 1000}, directory / "g_00100000")
    (directory / "config.json").write_text(json.dumps(cfg))
    return net
