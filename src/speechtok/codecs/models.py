"""DAC, EnCodec and Mimi (transformers' implementations) behind one small interface.

What differs between the families, and is handled here so that nothing else needs to know:
- the call: `DacModel.encode(x, n_quantizers)`, `EncodecModel.encode(x, bandwidth=...)` (codes of
  shape [chunks, B, Q, T]), `MimiModel.encode(x, num_quantizers=...)`;
- input padding: DAC is given audio padded with zeros to a multiple of its hop, as Descript's
  `preprocess` and transformers' DacFeatureExtractor do; EnCodec and Mimi pad their last frame
  themselves;
- memory: DAC is convolutional with a finite receptive field (computed from the layers below), so
  windows with that much context give exactly the whole-file result; EnCodec's LSTM and Mimi's
  transformer remember without bound, but both are causal, so windows get left context only.
"""

from __future__ import annotations

import math
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..audio import AudioSource, Reading
from ..errors import InputError
from ..hub import loading_bars, local_or_hub, model_load_error, offline
from ..readers import reader
from ..runtime.device import resolve_device, resolve_dtype

FAMILIES = ("dac", "encodec", "mimi")

# Codebooks used when neither n_quantizers nor bandwidth is given. transformers' own defaults differ
# per class (DAC: all; EnCodec: the smallest bandwidth, 1.5 kbps; Mimi: all 32); ours are the
# settings the families are mostly used at: DAC all codebooks (Descript's default), EnCodec 24 kHz
# 6 kbps = 8 codebooks (AudioCraft, Bark, VALL-E), Mimi 8 (what Moshi models).
DEFAULT_QUANTIZERS = {"dac": None, "encodec": 8, "mimi": 8}  # None: all the model has

# Context given to windows of the causal families, in seconds of audio (see docs/architecture.md
# for the measured effect).
CAUSAL_CONTEXT_SECONDS = {"encodec": 5.0, "mimi": 10.0}


class CodecError(InputError):
    """A codec that cannot be used as asked (unsupported model, bad n_quantizers / bandwidth)."""


class CodecModel:
    """A transformers codec model with what speechtok needs of it: rates, codebooks, batch
    encode/decode of equal-length inputs, and how much context a window needs."""

    def __init__(self, model: nn.Module, source: str, revision: str | None = None,
                 device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None):
        family = model.config.model_type
        if family not in FAMILIES:
            raise CodecError(f"{source}: a {family!r} model is not a codec speechtok supports ({', '.join(FAMILIES)})")
        config = model.config
        if family == "encodec" and (config.chunk_length_s is not None or config.normalize or config.audio_channels != 1):
            # encodec_48khz encodes 1 s chunks, each scaled by its own RMS: the codes are not
            # decodable without those scales, which a token sequence does not carry.
            raise CodecError(f"{source}: EnCodec models that normalise and chunk their input (encodec_48khz, "
                             "stereo) are not supported: their codes need per-chunk scales to decode")
        self.family = family
        self.source = source
        self.revision = revision
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.model = model.eval().to(self.device, self.dtype)
        self.sample_rate = int(config.sampling_rate)
        self.hop = _hop(model)
        self.frame_rate = self.sample_rate / self.hop
        self.codebook_size = int(config.codebook_size)
        self.max_quantizers = _max_quantizers(model)
        self.min_quantizers = int(getattr(config, "num_semantic_quantizers", 1) or 1)
        self.causal = family != "dac"
        if family == "dac":
            use_inplace_snake(self.model)
            self.encode_context = _round_up(receptive_field(model.encoder), self.hop)  # samples, each side
            self.decode_context = math.ceil(receptive_field(model.decoder))  # frames, each side
        else:
            seconds = CAUSAL_CONTEXT_SECONDS[family]
            self.encode_context = _round_up(int(seconds * self.sample_rate), self.hop)
            self.decode_context = math.ceil(seconds * self.frame_rate)

    # --- audio in ----------------------------------------------------------------------------------

    def load(self, source: AudioSource, sample_rate: int | None = None, start: float | None = None,
             duration: float | None = None) -> np.ndarray:
        """Mono float32 at the codec's rate, at least one frame (hop) long (the audio front end)."""
        return self.reading(source, sample_rate, start=start, duration=duration)

    @property
    def reading(self) -> Reading:
        """How the codec reads audio, without the model (picklable)."""
        return Reading(self.sample_rate, self.hop)

    # --- what a batch of windows goes through -------------------------------------------------

    def num_frames(self, samples: int) -> int:
        """Frames the encoder gives for `samples` of audio (DAC: already padded to the hop)."""
        return math.ceil(samples / self.hop)

    def pad(self, samples: int) -> int:
        """Zeros appended to a file before encoding (DAC: to a multiple of the hop)."""
        return (-samples) % self.hop if self.family == "dac" else 0

    @torch.inference_mode()
    def encode(self, audio: torch.Tensor, n_quantizers: int) -> torch.Tensor:
        """[B, T] audio (equal lengths) -> [B, n_quantizers, F] codes."""
        x = audio.to(self.device, self.dtype)[:, None, :]
        if self.family == "dac":
            return self.model.encode(x, n_quantizers=n_quantizers).audio_codes
        if self.family == "encodec":
            # The quantizer takes floor(kbps / kbps-per-codebook) codebooks; half a codebook more
            # keeps float rounding from taking one fewer. (transformers' `encode` would also only
            # accept its published bandwidths; counts are validated in `check_quantizers`.)
            bandwidth = self.bandwidth_of(n_quantizers + 0.5)
            return self.model.quantizer.encode(self.model.encoder(x), bandwidth).transpose(0, 1)
        return self.model.encode(x, num_quantizers=n_quantizers).audio_codes

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, Q, F] codes -> [B, T'] audio (T' is about F * hop; the caller trims)."""
        codes = codes.to(self.device)
        if self.family == "dac":
            return self.model.decode(audio_codes=codes).audio_values
        if self.family == "encodec":
            embeddings = self.model.quantizer.decode(codes.transpose(0, 1))
            return self.model.decoder(embeddings)[:, 0]
        return self.model.decode(codes).audio_values[:, 0]

    # --- codebooks and bitrate ------------------------------------------------------------------

    def bits_per_quantizer(self) -> float:
        """Bits per second one codebook adds."""
        return self.frame_rate * math.log2(self.codebook_size)

    def bandwidth_of(self, n_quantizers: float) -> float:
        """kbps of `n_quantizers` codebooks."""
        return n_quantizers * self.bits_per_quantizer() / 1000

    def check_quantizers(self, n_quantizers: int | None = None, bandwidth: float | None = None) -> int:
        """The codebook count asked for (by count or by kbps), validated; default per family."""
        if n_quantizers is not None and bandwidth is not None:
            raise CodecError("give n_quantizers or bandwidth, not both")
        valid = range(self.min_quantizers, self.max_quantizers + 1)
        if bandwidth is not None:
            exact = bandwidth * 1000 / self.bits_per_quantizer()
            n = round(exact)
            if abs(exact - n) > 1e-6 * max(exact, 1) or n not in valid:
                choices = ", ".join(f"{self.bandwidth_of(q):g}" for q in valid)
                raise CodecError(f"{self.source}: no codebook count gives {bandwidth:g} kbps; each of its "
                                 f"{self.codebook_size}-entry codebooks at {self.frame_rate:g} Hz adds "
                                 f"{self.bandwidth_of(1):g} kbps, so it offers {choices} kbps")
            return n
        if n_quantizers is None:
            n_quantizers = DEFAULT_QUANTIZERS[self.family] or self.max_quantizers
            return min(n_quantizers, self.max_quantizers)
        if n_quantizers not in valid:
            raise CodecError(f"{self.source}: n_quantizers={n_quantizers}, but this model has "
                             f"{self.max_quantizers} codebooks (choose {valid.start}..{valid.stop - 1})")
        return n_quantizers

    def to_dict(self) -> dict:
        return {"type": "codec", "family": self.family, "model": self.source, "revision": self.revision}


def load_codec(source: str, revision: str | None = None, device: str | torch.device = "cpu",
               dtype: str | torch.dtype | None = None, sample_rate: int | None = None) -> CodecModel:
    """A codec from a hub id, a local transformers directory, or an original DAC checkpoint
    (Descript `.pth`, SpeechBrain DAC lobe `.ckpt`; `sample_rate` when the file does not say)."""
    source = local_or_hub(str(source))  # a missing local path fails here, not as a download
    path = Path(source)
    if path.is_file():  # Descript / SpeechBrain DAC weights, read by speechtok.formats.dac
        return CodecModel(reader("dac-checkpoint")(path, sample_rate), str(path.resolve()), None, device, dtype)
    from transformers import AutoConfig, DacModel, EncodecModel, MimiModel

    loading_bars()

    classes = {"dac": DacModel, "encodec": EncodecModel, "mimi": MimiModel}
    local_only = not path.exists() and offline()  # offline, the cache only: fail at once, not after retries
    try:
        config = AutoConfig.from_pretrained(source, revision=revision, local_files_only=local_only)
    except (OSError, ValueError) as error:
        raise model_load_error(source, error) from None
    if config.model_type not in classes:
        raise CodecError(f"{source}: a {config.model_type!r} model is not a codec ({', '.join(FAMILIES)})")
    try:
        model = classes[config.model_type].from_pretrained(source, revision=revision, local_files_only=local_only)
    except (OSError, ValueError) as error:
        raise model_load_error(source, error) from None
    name = str(path.resolve()) if path.is_dir() else source  # local directories by absolute path
    return CodecModel(model, name, revision, device, dtype)


def receptive_field(module: nn.Module) -> float:
    """How far (in input steps) an output of a stack of 1-D convolutions can see, along the
    longest path. Encoder: input samples per output frame; decoder: input frames per output
    sample. Skip connections add no reach, so walking the convolutions in order suffices
    (DAC registers its layers in the order it applies them)."""
    reach, step = 0.0, 1.0  # step: input steps per position at the current layer
    for layer in module.modules():
        if isinstance(layer, nn.ConvTranspose1d):
            stride = layer.stride[0]
            reach += math.ceil(layer.kernel_size[0] / stride) * step
            step /= stride
        elif isinstance(layer, nn.Conv1d):
            reach += (layer.kernel_size[0] - 1) * layer.dilation[0] * step
            step *= layer.stride[0]
    return reach


def use_inplace_snake(model: nn.Module) -> None:
    """DAC's Snake activations (x + sin(a x)^2 / a, a third of its CPU time) computed with one
    temporary instead of four: the same operations in the same order, so bit-identical output, and
    DAC encodes 1.45x / decodes 1.35x faster on a 2-core CPU (random 16 kHz-sized model, 10 s)."""
    from transformers.models.dac.modeling_dac import Snake1d

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # training through the model: autograd needs the temporaries
            return hidden_states + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * hidden_states).pow(2)
        out = hidden_states * self.alpha
        out.sin_().square_()
        return out.mul_((self.alpha + 1e-9).reciprocal()).add_(hidden_states)

    for module in model.modules():
        if isinstance(module, Snake1d):
            module.forward = types.MethodType(forward, module)


def _hop(model: nn.Module) -> int:
    config = model.config
    if config.model_type == "dac":
        return int(config.hop_length)
    if config.model_type == "encodec":
        return int(math.prod(config.upsampling_ratios))
    return round(config.sampling_rate / config.frame_rate)


def _max_quantizers(model: nn.Module) -> int:
    config = model.config
    if config.model_type == "dac":
        return int(config.n_codebooks)
    if config.model_type == "encodec":
        return int(model.quantizer.get_num_quantizers_for_bandwidth(config.target_bandwidths[-1]))
    return int(config.num_quantizers)


def _round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)
