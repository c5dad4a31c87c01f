"""fairseq / textlesslib CodeHiFiGAN checkpoints -> UnitHifiGAN.

A checkpoint is a torch file whose `generator` entry is the state dict, with a JSON config beside
it (`config.json`, or given). The config's architecture keys are read (upsampling, residual blocks,
`num_embeddings`, `embedding_dim`, `dur_predictor_params`, `multispkr` / `num_speakers`,
`sampling_rate`); its training and data settings (learning rate, segment size, mel settings...)
do not change inference and are not needed. Features inference cannot serve from units alone are
refused by name: F0 conditioning (needs an F0 track) and speaker embedders (need reference audio).
fairseq pads its convolutions with zeros and names them without SpeechBrain's `.conv` level.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import FormatError
from ..readers import register
from ..vocoders.hifigan import HifiGANConfig, UnitHifiGAN
from .torch_files import fold_weight_norm, load_checkpoint

_UNSUPPORTED = {"f0": "F0 conditioning (it needs an F0 track, which units do not carry)",
                "f0_quant_num_bin": "quantised F0 conditioning",
                "embedder_params": "a speaker embedder (it needs reference audio)"}
_CONVS = re.compile(r"^(conv_pre|conv_post|ups\.\d+|resblocks\.\d+\.convs[12]\.\d+|var_predictor\.conv[12]\.0)\.(weight|bias)$")


def generator_config(cfg: dict, path: Path) -> HifiGANConfig:
    for key, what in _UNSUPPORTED.items():
        if cfg.get(key):
            raise FormatError(f"{path}: the vocoder uses {what}; speechtok decodes from units only")
    try:
        duration = cfg.get("dur_predictor_params") or None
        embedding = int(cfg["embedding_dim"])
        speakers = int(cfg.get("num_speakers", 200)) if cfg.get("multispkr") else 0
        expected_in = embedding * (2 if speakers else 1)
        if int(cfg.get("model_in_dim", expected_in)) != expected_in:
            raise FormatError(f"{path}: model_in_dim {cfg['model_in_dim']} is not the embedding "
                                  f"({expected_in}); extra conditioning inputs are not supported")
        return HifiGANConfig(
            vocab_size=int(cfg["num_embeddings"]),
            embedding_dim=embedding,
            upsample_factors=list(cfg["upsample_rates"]),
            upsample_kernel_sizes=list(cfg["upsample_kernel_sizes"]),
            upsample_initial_channel=int(cfg["upsample_initial_channel"]),
            resblock_type=str(cfg.get("resblock", "1")),
            resblock_kernel_sizes=list(cfg["resblock_kernel_sizes"]),
            resblock_dilation_sizes=[list(d) for d in cfg["resblock_dilation_sizes"]],
            pooling="none",
            padding_mode="zeros",
            duration_predictor=duration is not None,
            var_pred_hidden_dim=int((duration or {}).get("var_pred_hidden_dim", 128)),
            var_pred_kernel_size=int((duration or {}).get("var_pred_kernel_size", 3)),
            duration_layer_norm=True,
            num_speakers=speakers,
        )
    except KeyError as error:
        raise FormatError(f"{path}: the vocoder config lacks {error}") from None


def our_name(name: str) -> str:
    """A fairseq CodeGenerator parameter's name in UnitHifiGAN."""
    name = re.sub(r"^dict\.", "unit_embedding.", name)
    name = re.sub(r"^spkr\.", "speaker_embedding.", name)
    name = re.sub(r"^dur_predictor\.", "var_predictor.", name)
    match = _CONVS.match(name)
    return f"{match.group(1)}.conv.{match.group(2)}" if match else name


@register("fairseq-vocoder")
def load_generator(checkpoint: str | Path, config: str | Path | None = None) -> tuple[UnitHifiGAN, dict]:
    """The generator of a CodeHiFiGAN checkpoint, weight norm folded, every key used; and its config."""
    checkpoint = Path(checkpoint)
    config_path = Path(config) if config else checkpoint.with_name("config.json")
    if not config_path.exists():
        raise FormatError(f"{checkpoint}: no vocoder config ({config_path}); pass config=")
    cfg = json.loads(config_path.read_text())
    model = UnitHifiGAN(generator_config(cfg, config_path))
    state = load_checkpoint(checkpoint, "CodeHiFiGAN checkpoint")
    if "generator" not in state:
        raise FormatError(f"{checkpoint}: no `generator` entry (keys: {', '.join(list(state)[:8])})")
    weights = {our_name(k): v for k, v in fold_weight_norm(state["generator"], checkpoint).items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise FormatError(f"{checkpoint}: does not fit the generator its config describes: "
                              f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval(), cfg
