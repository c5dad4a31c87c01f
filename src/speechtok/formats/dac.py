"""Original DAC weights -> transformers' DacModel.

Two layouts hold the same network under Descript's module names:
- Descript's released `.pth` files: {"state_dict", "metadata": {"kwargs": {encoder_dim,
  encoder_rates, latent_dim, decoder_dim, decoder_rates, n_codebooks, codebook_size, codebook_dim,
  quantizer_dropout, sample_rate}}}, convolutions weight-normed as `weight_g` / `weight_v`;
- SpeechBrain's DAC lobe checkpoints: the bare state dict, weight norm as
  `parametrizations.weight.original0` (g) / `original1` (v), no metadata; the configuration is
  read off the tensor shapes and the sample rate is given (or known from the published models).

Weight norm is folded (`torch_files.fold_weight_norm`) since transformers' DacModel holds plain
weights. Every key must be used: an unknown key is an error naming it.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import FormatError
from ..readers import register
from .torch_files import fold_weight_norm, load_checkpoint

# Sample rate of each published Descript model, by (hop, codebooks): 16 and 24 kHz share a hop.
PUBLISHED_RATES = {(320, 12): 16000, (320, 32): 24000, (512, 9): 44100, (512, 18): 44100}


@register("dac-checkpoint")
def load_dac_checkpoint(path: str | Path, sample_rate: int | None = None):
    """A transformers DacModel holding the weights of a Descript or SpeechBrain DAC checkpoint."""
    from transformers import DacConfig, DacModel

    path = Path(path)
    checkpoint = load_checkpoint(path, "DAC checkpoint")
    state = checkpoint.get("state_dict", checkpoint)
    kwargs = dict((checkpoint.get("metadata") or {}).get("kwargs") or {})
    weights = fold_weight_norm(state, path)
    shapes = _shapes_config(weights, path)
    config = {**shapes, **{k: v for k, v in kwargs.items() if v is not None}}
    if sample_rate is not None:
        config["sample_rate"] = sample_rate
    if "sample_rate" not in config:
        hop = _prod(config["encoder_rates"])
        config["sample_rate"] = PUBLISHED_RATES.get((hop, config["n_codebooks"]))
        if config["sample_rate"] is None:
            raise FormatError(f"{path}: the checkpoint does not say its sample rate; pass sample_rate=")
    _check_consistent(config, shapes, path)
    model = DacModel(DacConfig(
        encoder_hidden_size=config["encoder_dim"],
        downsampling_ratios=list(config["encoder_rates"]),
        decoder_hidden_size=config["decoder_dim"],
        n_codebooks=config["n_codebooks"],
        codebook_size=config["codebook_size"],
        codebook_dim=config["codebook_dim"],
        quantizer_dropout=float(config.get("quantizer_dropout", 0.0)),
        sampling_rate=int(config["sample_rate"]),
    ))
    renamed = {hf_name(name, len(config["encoder_rates"]), len(config["decoder_rates"]), path): w
               for name, w in weights.items()}
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    if missing or unexpected:
        raise FormatError(f"{path}: weights do not fit the DAC model: missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]}")
    return model.eval()


# Descript's module paths -> transformers'. Both stacks are Sequentials: encoder.block = [conv,
# EncoderBlock x n, Snake, conv], decoder.model = [conv, DecoderBlock x n, Snake, conv, Tanh]; inside a
# block, `.block` is again a Sequential: EncoderBlock [Residual x 3, Snake, conv], DecoderBlock [Snake,
# conv transpose, Residual x 3], Residual [Snake, conv k7, Snake, conv k1].
_RESIDUAL = {"0": "snake1", "1": "conv1", "2": "snake2", "3": "conv2"}
_ENCODER_BLOCK = {0: "res_unit1", 1: "res_unit2", 2: "res_unit3", 3: "snake1", 4: "conv1"}
_DECODER_BLOCK = {0: "snake1", 1: "conv_t1", 2: "res_unit1", 3: "res_unit2", 4: "res_unit3"}


def hf_name(name: str, n_encoder: int, n_decoder: int, path: Path | None = None) -> str:
    """The transformers DacModel name of a Descript DAC parameter."""
    if name.startswith("quantizer.quantizers."):
        return name
    stacks = (("encoder.block", "encoder", n_encoder, _ENCODER_BLOCK),
              ("decoder.model", "decoder", n_decoder, _DECODER_BLOCK))
    for descript, hf, blocks, block_layers in stacks:
        m = re.fullmatch(re.escape(descript) + r"\.(\d+)\.(.+)", name)
        if not m:
            continue
        i, rest = int(m.group(1)), m.group(2)
        ends = {0: "conv1", blocks + 1: "snake1", blocks + 2: "conv2"}
        if i in ends:
            return f"{hf}.{ends[i]}.{rest}"
        inner = re.fullmatch(r"block\.(\d+)\.(.+)", rest)
        if inner and 1 <= i <= blocks and int(inner.group(1)) in block_layers:
            layer, tail = block_layers[int(inner.group(1))], inner.group(2)
            if not layer.startswith("res_unit"):
                return f"{hf}.block.{i - 1}.{layer}.{tail}"
            unit = re.fullmatch(r"block\.(\d+)\.(.+)", tail)
            if unit and unit.group(1) in _RESIDUAL:
                return f"{hf}.block.{i - 1}.{layer}.{_RESIDUAL[unit.group(1)]}.{unit.group(2)}"
    raise FormatError(f"{path}: unexpected DAC parameter {name}")


def _shapes_config(weights: dict[str, torch.Tensor], path: Path) -> dict:
    """The DAC configuration the tensor shapes imply (every conv's stride is half its kernel)."""
    try:
        encoder_blocks = sorted({int(m.group(1)) for n in weights
                                 if (m := re.match(r"encoder\.block\.(\d+)\.block\.4\.weight$", n))})
        decoder_blocks = sorted({int(m.group(1)) for n in weights
                                 if (m := re.match(r"decoder\.model\.(\d+)\.block\.1\.weight$", n))})
        quantizers = sorted({int(m.group(1)) for n in weights
                             if (m := re.match(r"quantizer\.quantizers\.(\d+)\.codebook\.weight$", n))})
        codebook = weights["quantizer.quantizers.0.codebook.weight"]
        return {
            "encoder_dim": weights["encoder.block.0.weight"].shape[0],
            "encoder_rates": [weights[f"encoder.block.{i}.block.4.weight"].shape[-1] // 2 for i in encoder_blocks],
            "latent_dim": weights[f"encoder.block.{len(encoder_blocks) + 2}.weight"].shape[0],
            "decoder_dim": weights["decoder.model.0.weight"].shape[0],
            "decoder_rates": [weights[f"decoder.model.{i}.block.1.weight"].shape[-1] // 2 for i in decoder_blocks],
            "n_codebooks": len(quantizers),
            "codebook_size": codebook.shape[0],
            "codebook_dim": codebook.shape[1],
        }
    except (KeyError, IndexError) as error:
        raise FormatError(f"{path}: not a DAC state dict (no {error})") from None


def _check_consistent(config: dict, shapes: dict, path: Path) -> None:
    """What transformers' DacModel can hold: the metadata must agree with the weights, the decoder
    must mirror the encoder, and the latent size must be the one it derives."""
    for key, value in shapes.items():
        given = config[key]
        if (list(given) if isinstance(given, (list, tuple)) else given) != value:
            raise FormatError(f"{path}: metadata says {key}={given} but the weights have {value}")
    if list(config["decoder_rates"]) != list(config["encoder_rates"])[::-1]:
        raise FormatError(f"{path}: decoder rates {config['decoder_rates']} do not mirror encoder rates "
                                 f"{config['encoder_rates']}; transformers' DacModel cannot hold it")
    if config["latent_dim"] != config["encoder_dim"] * 2 ** len(config["encoder_rates"]):
        raise FormatError(f"{path}: latent_dim {config['latent_dim']} is not encoder_dim * 2^blocks; "
                                 "transformers' DacModel cannot hold it")


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out
