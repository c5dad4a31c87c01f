"""Hidden layers of Hugging Face wav2vec2 / HuBERT / WavLM / data2vec-audio models.

Layer n is `hidden_states[n]` of the full model in transformers >= 5 (0 = input of the first
transformer block, n = output of block n), so k-means trained by fairseq or SpeechBrain on layer n
apply unchanged. Only the blocks up to the highest requested layer are kept and run, and a truncated
run gives exactly the full model's tensor for every kept layer.

Stable-layer-norm models (the "large" ones) end with a LayerNorm after the last block. It belongs
to no layer: layer L is the un-normalised output of block L, as transformers' `hidden_states[L]`
and fairseq's `extract_features(output_layer=L)` give it. The normalised tensor (transformers'
`last_hidden_state`, s3prl's last hidden state) is an extra stream, `last_hidden_state`, on request.

Batching does not change results: padding is invisible to every real frame.
- The group-norm feature extractors (base models) normalise each channel of the first conv over
  time; with padding, those statistics are computed over the real frames only.
- The transformer gets a mask of padded frames (which also zeroes them before the positional
  convolution). A batch without padding gets no mask, exactly as a single file does.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..audio import Reading
from ..errors import InputError
from ..hub import loading_bars, local_or_hub, model_load_error, offline
from ..readers import reader
from ..runtime.device import resolve_device, resolve_dtype
from .base import Encoder

log = logging.getLogger(__name__)

# oneDNN (torch's CPU conv backend) caches a compiled primitive per input shape, 1024 by default,
# each holding buffers; utterances of every length make RSS grow by ~0.5 GB over a 1000-file corpus.
# A small cache keeps memory flat (read when the first conv runs; a value the user set wins).
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")

SUPPORTED_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")
DEFAULT_CHUNK_SECONDS = 100.0  # fairseq's dump_hubert_feature.py max_chunk = 1.6M samples at 16 kHz

def normalize_waveform(wave: np.ndarray) -> np.ndarray:
    """Whole-utterance layer norm as fairseq and SpeechBrain apply it (`F.layer_norm(wav,
    wav.shape)`, eps 1e-5) - not the HF feature extractor's eps 1e-7, which can flip tokens."""
    t = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    return F.layer_norm(t, t.shape).numpy()


def conv_output_length(length, kernels: Sequence[int], strides: Sequence[int]):
    """Frames a conv stack (no padding) gives for `length` samples; works on ints and tensors."""
    for k, s in zip(kernels, strides):
        length = (length - k) // s + 1
    return length


def min_input_length(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Shortest input giving one frame: the stack's receptive field."""
    field = 1
    for k, s in reversed(list(zip(kernels, strides))):
        field = (field - 1) * s + k
    return field


def masked_group_norm(x: torch.Tensor, norm: nn.GroupNorm, lengths: torch.Tensor) -> torch.Tensor:
    """GroupNorm of [B, C, T] whose statistics ignore frames at or after `lengths[b]`."""
    b, c, t = x.shape
    g = norm.num_groups
    valid = (torch.arange(t, device=x.device)[None, :] < lengths[:, None]).to(torch.float32)  # [B, T]
    xf = x.float().reshape(b, g, c // g, t)
    mask = valid[:, None, None, :]
    count = mask.sum(dim=(2, 3), keepdim=True) * (c // g)
    mean = (xf * mask).sum(dim=(2, 3), keepdim=True) / count
    var = (((xf - mean) * mask) ** 2).sum(dim=(2, 3), keepdim=True) / count
    out = ((xf - mean) / torch.sqrt(var + norm.eps)).reshape(b, c, t)
    if norm.affine:
        out = out * norm.weight.float()[None, :, None] + norm.bias.float()[None, :, None]
    return out.to(x.dtype)


class SSLEncoder(Encoder):
    """Hidden layers of a transformers speech SSL model, truncated to the highest requested layer.

    Build with `SSLEncoder.from_pretrained("microsoft/wavlm-large", layers=[7])` (hub id or local
    directory) or wrap a model you already have with `SSLEncoder(model, layers=[7])`.

    `last_hidden_state=True` adds the stream `last_hidden_state`: the full model's
    `last_hidden_state`, which for stable-layer-norm models is layer L passed through the final
    LayerNorm (and for other models equals layer L). All L blocks then run.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[int],
        *,
        normalize: bool = False,
        source: str | None = None,
        revision: str | None = None,
        sample_rate: int = 16000,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
        chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
        last_hidden_state: bool = False,
    ):
        config = model.config
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise InputError(f"{source or 'the model'}: model type {config.model_type!r} is not one of "
                             f"{SUPPORTED_MODEL_TYPES}")
        self.layers = sorted(set(int(n) for n in layers))
        if not self.layers:
            raise InputError("name at least one layer")
        self.total_layers = config.num_hidden_layers
        if self.layers[0] < 0 or self.layers[-1] > self.total_layers:
            raise InputError(
                f"layers {self.layers} out of range: {source or config.model_type} has layers "
                f"0..{self.total_layers} (0 = input of the first transformer block)"
            )
        self.source, self.revision, self.normalize = source, revision, bool(normalize)
        self.sample_rate = int(sample_rate)
        self.kernels, self.strides = list(config.conv_kernel), list(config.conv_stride)
        self.frame_rate = self.sample_rate / float(np.prod(self.strides))
        self.min_samples = min_input_length(self.kernels, self.strides)
        self.chunk_samples = None if chunk_seconds is None else int(chunk_seconds * self.sample_rate)
        self.last_hidden_state = bool(last_hidden_state)
        self.streams = tuple(f"L{n}" for n in self.layers) + (("last_hidden_state",) if self.last_hidden_state else ())
        self.feature_dim = int(config.hidden_size)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        keep = self.total_layers if self.last_hidden_state else self.layers[-1]
        model, final_norm = _truncate(model, keep)
        self.model = model.eval().to(self.device, self.dtype)
        self.final_norm = final_norm.eval().to(self.device, self.dtype)
        self._captured: list[torch.Tensor] | None = None
        self._frame_mask: torch.Tensor | None = None
        self._install_hooks()

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        layers: Sequence[int],
        *,
        revision: str | None = None,
        normalize: bool | None = None,
        **kwargs,
    ) -> SSLEncoder:
        """Load a hub id, a local transformers directory, or an original checkpoint file (fairseq
        wav2vec2 / HuBERT, Microsoft WavLM, s3prl; see `formats.ssl_checkpoints`). `normalize=None`
        follows the checkpoint: the feature-extractor config's `do_normalize`, or the original
        task's `normalize`."""
        model, extractor, source = load_ssl_model(name_or_path, revision)
        if normalize is None:
            normalize = extractor.get("do_normalize", True)
        sample_rate = extractor.get("sampling_rate", 16000)
        return cls(model, layers, normalize=normalize, source=source, revision=revision,
                   sample_rate=sample_rate, **kwargs)

    def to_dict(self) -> dict:
        config = {
            "type": "ssl",
            "model": self.source,
            "revision": self.revision,
            "normalize": self.normalize,
            "sample_rate": self.sample_rate,
            "chunk_seconds": None if self.chunk_samples is None else self.chunk_samples / self.sample_rate,
        }
        # Only when set: corpus jobs compare this dict to resume, and jobs started without the key
        # must still match.
        if self.last_hidden_state:
            config["last_hidden_state"] = True
        return config

    @property
    def reading(self) -> Reading:
        return Reading(self.sample_rate, self.min_samples, normalize_waveform if self.normalize else None)

    @torch.inference_mode()
    def forward_batch(self, waves: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        lengths = torch.tensor([len(w) for w in waves], device=self.device)
        batch = torch.zeros(len(waves), int(lengths.max()), dtype=self.dtype, device=self.device)
        for i, w in enumerate(waves):
            batch[i, : len(w)] = torch.from_numpy(w).to(self.device, self.dtype)
        padded = bool((lengths != lengths.max()).any())

        conv = self._conv_features(batch, lengths if padded else None)
        frames = conv_output_length(lengths, self.kernels, self.strides)
        hidden = self.model.feature_projection(conv.transpose(1, 2))
        if isinstance(hidden, tuple):  # wav2vec2 / WavLM / data2vec also return the normed input
            hidden = hidden[0]
        mask = None
        if padded:
            mask = torch.arange(hidden.shape[1], device=self.device)[None, :] < frames[:, None]

        self._captured, self._frame_mask = [], mask
        try:
            out = self.model.encoder(hidden, attention_mask=mask)
            states = self._captured + [out[0]]  # inputs of the kept blocks from hooks, then the output
        finally:
            self._captured, self._frame_mask = None, None
        streams = {f"L{n}": states[n] for n in self.layers}
        if self.last_hidden_state:
            streams["last_hidden_state"] = self.final_norm(states[-1])
        return [{s: x[b, : int(frames[b])] for s, x in streams.items()} for b in range(len(waves))]

    def _conv_features(self, batch: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """The conv front end as the model's conv layers compute it, [B, C, T] out.

        Run as 2-D convs over [B, C, 1, T] in channels-last memory: oneDNN's fast layout, in which
        the layer norm over channels reads contiguous memory and no transposed copies are made
        (~40% faster on CPU than the module's conv1d + transpose + LayerNorm + transpose).
        """
        for i, layer in enumerate(self.model.feature_extractor.conv_layers):
            conv = layer.conv
            if i == 0:
                hidden = _first_conv_channels_last(batch, conv)
            else:
                hidden = F.conv2d(hidden, conv.weight[:, :, None, :], conv.bias, stride=(1, conv.stride[0]))
                hidden = hidden.contiguous(memory_format=torch.channels_last)
            norm = getattr(layer, "layer_norm", None)
            if isinstance(norm, nn.LayerNorm):
                last = hidden.permute(0, 2, 3, 1)  # [B, 1, T, C], contiguous in this layout
                hidden = layer.activation(norm(last)).permute(0, 3, 1, 2)
            elif isinstance(norm, nn.GroupNorm):
                flat = hidden[:, :, 0, :]
                if lengths is not None:
                    valid = conv_output_length(lengths, self.kernels[: i + 1], self.strides[: i + 1])
                    flat = masked_group_norm(flat, norm, valid)
                else:
                    flat = norm(flat)
                hidden = layer.activation(flat)[:, :, None, :].contiguous(memory_format=torch.channels_last)
            else:
                hidden = layer.activation(hidden)
        return hidden[:, :, 0, :]

    def _install_hooks(self):
        # The input of every kept block is a layer: hidden_states[i] enters block i.
        def capture(module, args, kwargs):
            if self._captured is not None:
                self._captured.append(args[0] if args else kwargs["hidden_states"])

        for block in self.model.encoder.layers:
            block.register_forward_pre_hook(capture, with_kwargs=True)

        # data2vec-audio's positional embedding is a stack of convs: the conv bias makes padded
        # frames non-zero after the first, and the next would carry them into real frames.
        def zero_padding(module, args, output):
            if self._frame_mask is not None:
                return output * self._frame_mask[:, None, :].to(output.dtype)  # output is [B, C, T]

        for conv in getattr(self.model.encoder.pos_conv_embed, "layers", []):
            conv.register_forward_hook(zero_padding)


def _first_conv_channels_last(batch: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """The first conv (one input channel) of [B, samples] as a matmul over strided windows: it
    writes [B, T, C] directly - [B, C, 1, T] in channels-last - instead of a channels-first
    output that would have to be copied (4x faster on CPU, same sums)."""
    kernel, stride = conv.kernel_size[0], conv.stride[0]
    windows = batch.unfold(-1, kernel, stride)  # [B, T, kernel], a view
    weight = conv.weight[:, 0, :].T  # [kernel, C]
    flat = windows.reshape(-1, kernel)
    out = flat @ weight if conv.bias is None else torch.addmm(conv.bias, flat, weight)
    return out.view(len(batch), -1, weight.shape[1]).permute(0, 2, 1)[:, :, None, :]


def _truncate(model: nn.Module, last_layer: int) -> tuple[nn.Module, nn.Module]:
    """Keep blocks 1..last_layer; return the model and the norm that turns layer L into the full
    model's `last_hidden_state`.

    Stable-layer-norm encoders apply `encoder.layer_norm` after the last block. Layer n is
    `hidden_states[n]` for every n, and `hidden_states[L]` is taken before that norm, so the encoder
    never applies it: the encoder's output is then exactly the last kept layer, L included. In
    post-layer-norm ("base") encoders `encoder.layer_norm` runs before the first block (it is part
    of layer 0) and stays; their `last_hidden_state` is layer L itself (Identity).
    """
    encoder = model.encoder
    encoder.layers = encoder.layers[:last_layer]
    final_norm: nn.Module = nn.Identity()
    if getattr(model.config, "do_stable_layer_norm", False):
        final_norm, encoder.layer_norm = encoder.layer_norm, nn.Identity()
    return model, final_norm


def load_ssl_model(name_or_path: str, revision: str | None = None) -> tuple[nn.Module, dict, str]:
    """(the transformers base model, its feature-extractor settings, its source) of a hub id, a
    local transformers directory, a training run's directory or an original checkpoint file. The source of a local directory
    or file is its absolute path, so what records it works from anywhere."""
    from transformers import AutoModel

    loading_bars()

    name_or_path = local_or_hub(str(name_or_path))  # a missing local path fails here, not as a download
    run = Path(name_or_path)
    if run.is_dir() and not (run / "config.json").exists() and (run / "final" / "config.json").exists():
        name_or_path = str(run / "final")  # a training run (`speechtok train`): its trained model
    if Path(name_or_path).is_file():  # an original checkpoint, read by speechtok.formats
        model, extractor = reader("ssl-checkpoint")(name_or_path)
    else:
        # offline, the cache only: a missing model fails at once instead of after retries
        local_only = not Path(name_or_path).exists() and offline()
        try:
            model = AutoModel.from_pretrained(name_or_path, revision=revision, local_files_only=local_only)
        except OSError as err:
            raise model_load_error(name_or_path, err) from None
        extractor = _feature_extractor_config(name_or_path, revision, local_only)
    source = str(Path(name_or_path).resolve()) if Path(name_or_path).exists() else str(name_or_path)
    return model, extractor, source


def _feature_extractor_config(name_or_path: str, revision: str | None, local_only: bool = False) -> dict:
    from transformers import AutoFeatureExtractor

    try:
        extractor = AutoFeatureExtractor.from_pretrained(name_or_path, revision=revision, local_files_only=local_only)
    except (OSError, ValueError):
        log.warning("%s has no feature-extractor config; assuming 16 kHz and do_normalize=True "
                    "(the transformers default)", name_or_path)
        return {}
    return extractor.to_dict()
