"""SpeechBrain unit HiFi-GAN repos (`hyperparams.yaml` + `generator.ckpt`) -> UnitHifiGAN.

hyperparams.yaml is HyperPyYAML: `!new:` / `!name:` / `!apply:` tags build objects and `!ref <key>`
points at other keys. It is read here as data only (nothing it names is imported or run): the
generator's arguments are taken from its `!new:...UnitHifiganGenerator` mapping, references
resolved to the top-level values they name. `generator.ckpt` is a plain state dict with weight
norm in either form (1.0.x `weight_g`/`weight_v`, 1.1 `parametrizations.weight.original0/1`).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..errors import FormatError, NotFoundError
from ..hub import hub_file, local_or_hub
from ..readers import register
from ..vocoders.hifigan import HifiGANConfig, UnitHifiGAN
from .torch_files import fold_weight_norm, load_checkpoint

HYPERPARAMS = "hyperparams.yaml"
GENERATOR = "generator.ckpt"
_REF = re.compile(r"^<([A-Za-z_][\w.]*)>$")
# Generator arguments: those that shape the network; those inference does not use (unit inference
# does not pad; dropout is for training); those supported at one value only (speaker conditioning
# and pre-embedded input are not).
_USED = {"vocab_size", "embedding_dim", "attn_dim", "pooling_type", "resblock_type", "resblock_dilation_sizes",
         "resblock_kernel_sizes", "upsample_kernel_sizes", "upsample_initial_channel", "upsample_factors",
         "conv_post_bias", "duration_predictor", "var_pred_hidden_dim", "var_pred_kernel_size"}
_UNUSED = {"in_channels", "inference_padding", "var_pred_dropout", "normalize_speaker_embeddings"}
_FIXED = {"out_channels": 1, "cond_channels": 0, "multi_speaker": False, "skip_token_embedding": False}


class Tagged:
    """A HyperPyYAML tagged node, kept as data: `!new:cls {args}`, `!ref <key>`, ..."""

    def __init__(self, tag: str, value):
        self.tag, self.value = tag, value


class _Loader(yaml.SafeLoader):
    pass


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Tagged:
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return Tagged(suffix, value)


_Loader.add_multi_constructor("!", _construct)


def read_hyperparams(path: str | Path) -> dict:
    return yaml.load(Path(path).read_text(), Loader=_Loader) or {}


def _resolve(value, top: dict, path: Path, depth: int = 0):
    if isinstance(value, Tagged) and value.tag in ("ref", "copy"):
        match = _REF.match(str(value.value).strip())
        if not match or depth > 20:
            raise FormatError(f"{path}: cannot resolve `!{value.tag} {value.value}` (only plain <key> references)")
        target: object = top
        for part in match.group(1).split("."):
            if not isinstance(target, dict) or part not in target:
                raise FormatError(f"{path}: `!ref {value.value}` names no key")
            target = target[part]
        return _resolve(target, top, path, depth + 1)
    if isinstance(value, list):
        return [_resolve(v, top, path, depth) for v in value]
    return value


def generator_config(hparams: dict, path: Path) -> HifiGANConfig:
    """The UnitHifiGAN configuration a SpeechBrain hyperparams file declares."""
    node = hparams.get("generator")
    if not isinstance(node, Tagged) or not node.tag.startswith("new:") or not node.tag.endswith("UnitHifiganGenerator"):
        raise FormatError(f"{path}: no `generator: !new:...UnitHifiganGenerator` entry")
    args = {k: _resolve(v, hparams, path) for k, v in node.value.items()}
    unknown = sorted(set(args) - _USED - _UNUSED - set(_FIXED))
    if unknown:
        raise FormatError(f"{path}: generator arguments speechtok does not know: {', '.join(unknown)}")
    for key, value in _FIXED.items():
        if args.get(key, value) != value:
            raise FormatError(f"{path}: {key}={args[key]} is not supported (only {key}={value})")
    if args.get("in_channels", args.get("embedding_dim")) != args.get("embedding_dim"):
        raise FormatError(f"{path}: in_channels {args['in_channels']} differs from embedding_dim")
    options = {k: args[k] for k in _USED if k in args and k != "pooling_type"}
    options["pooling"] = args.get("pooling_type", "attention")
    options["resblock_type"] = str(options.get("resblock_type", "1"))
    return HifiGANConfig(**options, padding_mode="reflect")


def vocoder_layers(hparams: dict, repo: Path | None) -> tuple[int, ...] | None:
    """The SSL layers of the vocoder's codebook columns: the hyperparams' `layer` / `layers`
    list, else the layers of the repo's k-means files (kmeans/*_L<n>.pt), in increasing order."""
    for key in ("layer", "layers", "layer_ids"):
        value = _resolve(hparams.get(key), hparams, Path(HYPERPARAMS))
        if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            return tuple(value)
    if repo is not None and (repo / "kmeans").is_dir():
        found = sorted({int(m.group(1)) for p in (repo / "kmeans").iterdir()
                        if (m := re.search(r"_L(\d+)\.\w+$", p.name))})
        return tuple(found) or None
    return None


def load_generator(hyperparams: str | Path, checkpoint: str | Path) -> UnitHifiGAN:
    """The generator a SpeechBrain repo holds, weight norm folded, every key used."""
    config = generator_config(read_hyperparams(hyperparams), Path(hyperparams))
    model = UnitHifiGAN(config)
    state = fold_weight_norm(load_checkpoint(checkpoint, "SpeechBrain generator checkpoint"), checkpoint)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise FormatError(f"{checkpoint}: does not fit the generator its hyperparams describe: "
                              f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


@register("speechbrain-vocoder")
def read_repo(source: str | Path) -> tuple[UnitHifiGAN, dict, tuple[int, ...] | None]:
    """A SpeechBrain unit HiFi-GAN repo (local directory or hub id): the generator, the
    hyperparams, and the SSL layers of its codebook columns if the repo says."""
    path = Path(local_or_hub(str(source)))  # a missing local path fails here, not as a download
    if path.is_dir():
        hyperparams, checkpoint, repo = path / HYPERPARAMS, path / GENERATOR, path
    else:
        hyperparams, checkpoint, repo = hub_file(str(source), HYPERPARAMS), hub_file(str(source), GENERATOR), None
    for needed in (hyperparams, checkpoint):
        if not Path(needed).exists():
            raise NotFoundError(f"{source}: no {Path(needed).name}; not a SpeechBrain unit HiFi-GAN repo")
    hparams = read_hyperparams(hyperparams)
    return load_generator(hyperparams, checkpoint), hparams, vocoder_layers(hparams, repo)
