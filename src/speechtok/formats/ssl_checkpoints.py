"""Original SSL checkpoints -> the matching transformers model, without fairseq or s3prl.

Read:
- fairseq wav2vec 2.0 / XLS-R and HuBERT / mHuBERT: `{cfg: {model, task}, model}` (cfg a dict or a
  pickled OmegaConf container) or legacy `{args: Namespace, model}`; pre-training checkpoints and
  fine-tuned ones (`wav2vec_ctc` / `hubert_ctc`: the encoder under `w2v_encoder.w2v_model.`, its
  own config in `w2v_args`; the CTC head is left out);
- Microsoft's WavLM: `{cfg: dict, model}`, with the gated relative position bias;
- s3prl's converted checkpoints: `{task_cfg, model_cfg, model_weight, ...}`.

Config fields map to transformers config fields; a field that changes the network in a way the
transformers model cannot express is refused by name, and so is a field this module does not
know (a legacy `args` namespace holds every training option, so there only the model's fields are
read, as fairseq itself does). Weights map by module path; training-only parts (quantizer,
projection heads, label embeddings) are left out by name and any other key that does not map is
an error naming it.

These files are pickles: they are read with `torch.load(weights_only=True)` and an explicit
allow-list of the non-tensor types they hold (argparse.Namespace, OmegaConf containers and nodes
- replaced by plain stand-ins, so omegaconf need not be installed - builtin containers, numpy
scalars). A checkpoint naming anything else is refused with the name, and nothing from it runs.
"""

from __future__ import annotations

import argparse
import ast
import collections
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import FormatError
from ..readers import register
from .torch_files import load_checkpoint

CheckpointFormatError = FormatError  # the name before speechtok.errors


# ---------------------------------------------------------------------------------------------
# Reading the pickle with an allow-list


class _Recorded:
    """Stands in for an OmegaConf container, node or metadata object: keeps its pickled state."""

    def __setstate__(self, state):
        self.state = state


class _TypeRef:
    """Stands in for a type that pickled OmegaConf metadata only names (typing.Any, Dict...)."""

    def __init__(self, name: str):
        self.name = name


_OMEGACONF = ["omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig",
              "omegaconf.base.ContainerMetadata", "omegaconf.base.Metadata"] + [
    f"omegaconf.nodes.{n}" for n in ("AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode",
                                     "EnumNode", "BytesNode", "PathNode", "ValueNode")]
_TYPE_NAMES = ["typing.Any", "typing.Dict", "typing.List", "typing.Tuple", "typing.Optional", "typing.Union"]
_STAND_INS = {name: type(name.rsplit(".", 1)[1], (_Recorded,), {}) for name in _OMEGACONF}


def _allow_list() -> list:
    allowed: list = [argparse.Namespace]
    allowed += [(cls, name) for name, cls in _STAND_INS.items()]
    allowed += [(_TypeRef(name), name) for name in _TYPE_NAMES]
    # Plain data constructors: calling them builds data, never runs code from the file.
    allowed += [(t, f"builtins.{t.__name__}") for t in (dict, list, tuple, set, int, float, str, bool)]
    allowed += [collections.defaultdict, collections.OrderedDict]
    # numpy scalars (fairseq's extra_state keeps e.g. the best validation loss as one).
    multiarray = getattr(np, "_core", np.core).multiarray
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed.append((multiarray.scalar, f"{module}.scalar"))
    allowed.append((np.dtype, "numpy.dtype"))
    allowed += [type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_)]
    return allowed


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's top-level dict, with OmegaConf containers and namespaces as plain dicts."""
    raw = load_checkpoint(path, "checkpoint", allow=_allow_list(), allowed_description=(
        "tensors, builtin containers, argparse.Namespace, OmegaConf containers, numpy scalars"))
    return _plain(raw)


def _plain(obj):
    """OmegaConf stand-ins, namespaces and nested containers -> dicts, lists and values."""
    if isinstance(obj, _Recorded):
        state = obj.state
        if isinstance(state, dict) and "_content" in state:  # container or node
            return _plain(state["_content"])
        if isinstance(state, dict) and "_val" in state:
            return _plain(state["_val"])
        return None
    if isinstance(obj, argparse.Namespace):
        return {k: _plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, dict):
        return {k: (v if isinstance(v, torch.Tensor) else _plain(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _resolve(value, root: dict):
    """OmegaConf interpolations (`${task.normalize}`) that survive in pickled configs."""
    if isinstance(value, str):
        ref = re.fullmatch(r"\$\{([\w.]+)\}", value.strip())
        if ref:
            node = root
            for part in ref.group(1).split("."):
                if not isinstance(node, dict) or part not in node:
                    return None
                node = node[part]
            return _resolve(node, root)
    return value


# ---------------------------------------------------------------------------------------------
# Recognising the format


@dataclass
class OriginalCheckpoint:
    """What a checkpoint holds, in one form for every format."""

    family: str  # "wav2vec2" | "hubert" | "wavlm"
    model_cfg: dict  # the encoder's fields in fairseq / Microsoft naming
    state: dict  # encoder weights, fairseq / Microsoft names
    normalize: bool  # the task's waveform layer norm
    strict_fields: bool = True  # False for legacy namespaces, which hold every training option


_FINE_TUNED = {"wav2vec_ctc", "hubert_ctc", "wav2vec2_ctc"}
_FINE_TUNED_HEADS = ("w2v_encoder.proj.",)  # the CTC output layer
_ENCODER_PREFIX = "w2v_encoder.w2v_model."


def recognise(path: str | Path) -> OriginalCheckpoint:
    """Read `path` and say which family and format it is."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    keys = set(ckpt)
    if {"task_cfg", "model_cfg", "model_weight"} <= keys:  # s3prl's converted checkpoints
        model_cfg, task_cfg = ckpt["model_cfg"] or {}, ckpt["task_cfg"] or {}
        name = str(model_cfg.get("_name", ""))
        family = "hubert" if name == "hubert" or "dictionaries_symbols" in keys else "wav2vec2"
        return OriginalCheckpoint(family, model_cfg, ckpt["model_weight"], bool(task_cfg.get("normalize", False)))
    cfg = ckpt.get("cfg")
    if isinstance(cfg, dict) and "model" in ckpt and "encoder_layers" in cfg:  # Microsoft WavLM
        return OriginalCheckpoint("wavlm", cfg, ckpt["model"], bool(cfg.get("normalize", False)))
    if "model" in ckpt and (isinstance(cfg, dict) and "model" in cfg or ckpt.get("args") is not None):
        return _fairseq(path, ckpt)
    raise CheckpointFormatError(
        f"{path}: not a checkpoint speechtok knows (top-level keys {', '.join(sorted(map(str, keys))[:8])}"
        f"{' ...' if len(keys) > 8 else ''}); expected "
        "fairseq {cfg|args, model}, Microsoft WavLM {cfg, model} or s3prl {task_cfg, model_cfg, model_weight}"
    )


def _fairseq(path: Path, ckpt: dict) -> OriginalCheckpoint:
    cfg = ckpt.get("cfg")
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        root, model_cfg, task_cfg, strict = cfg, cfg["model"], cfg.get("task") or {}, True
        name = model_cfg.get("_name")
    else:  # legacy: one argparse namespace with every option
        root = model_cfg = task_cfg = ckpt["args"]
        strict, name = False, model_cfg.get("arch") or model_cfg.get("_name")
    state = ckpt["model"]
    normalize = _resolve(task_cfg.get("normalize", False), root)
    if name in _FINE_TUNED:
        inner = model_cfg.get("w2v_args")
        if not isinstance(inner, dict):
            raise CheckpointFormatError(f"{path}: fine-tuned checkpoint without the encoder's config (w2v_args)")
        outer_normalize = _resolve(model_cfg.get("normalize"), root)
        if "model" in inner:  # a {model, task, ...} config
            inner_root, inner_model, inner_task = inner, inner["model"], inner.get("task") or {}
        else:  # a legacy namespace
            inner_root = inner_model = inner_task = inner
            strict = False
        normalize = outer_normalize if outer_normalize is not None else _resolve(inner_task.get("normalize"), inner_root)
        model_cfg, root = inner_model, inner_root
        name = model_cfg.get("_name") or model_cfg.get("arch")
        encoder = {}
        for key, tensor in state.items():
            if key.startswith(_ENCODER_PREFIX):
                encoder[key[len(_ENCODER_PREFIX):]] = tensor
            elif not key.startswith(_FINE_TUNED_HEADS):
                raise CheckpointFormatError(f"{path}: fine-tuned checkpoint has a weight outside the encoder "
                                            f"that speechtok does not know: {key}")
        state = encoder
    family = {"wav2vec2": "wav2vec2", "hubert": "hubert"}.get(str(name))
    if family is None:
        raise CheckpointFormatError(f"{path}: fairseq model {name!r} is not wav2vec2, hubert, or their "
                                    f"fine-tuned {sorted(_FINE_TUNED)}")
    model_cfg = {k: _resolve(v, root) for k, v in model_cfg.items()}
    return OriginalCheckpoint(family, model_cfg, state, bool(normalize), strict)


# ---------------------------------------------------------------------------------------------
# Config fields -> transformers config

# Fields that shape the network, and the transformers field each becomes (or a check).
_MAPPED = {
    "encoder_layers": "num_hidden_layers",
    "encoder_embed_dim": "hidden_size",
    "encoder_ffn_embed_dim": "intermediate_size",
    "encoder_attention_heads": "num_attention_heads",
    "activation_fn": "hidden_act",
    "extractor_mode": "feat_extract_norm",
    "layer_norm_first": "do_stable_layer_norm",
    "conv_feature_layers": "conv_dim / conv_kernel / conv_stride",
    "conv_bias": "conv_bias",
    "conv_pos": "num_conv_pos_embeddings",
    "conv_pos_groups": "num_conv_pos_embedding_groups",
    "num_buckets": "num_buckets",
    "max_distance": "max_bucket_distance",
}
# Fields whose other values build a network transformers' model is not: refused unless as here.
_REQUIRED = {
    "layer_type": {"transformer"},
    "pos_conv_depth": {1},
    "conv_pos_batch_norm": {False},
    "pos_enc_type": {"abs"},
    "attn_type": {"", None},
    "quantize_input": {False},
    "adp_num": {-1, 0, None},
    "relative_position_embedding": {True},  # WavLM only (transformers' WavLM always has it)
    "gru_rel_pos": {True},  # WavLM only
    "expand_attention_head_size": {-1, None},  # Microsoft's WavLM configs carry it, at -1 (off)
}
# Training-time fields (dropout, masking, losses, quantizer targets, engineering flags).
_TRAINING_ONLY = {
    "_name", "dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop", "dropout_input",
    "dropout_features", "final_dim", "untie_final_proj", "logit_temp", "quantize_targets", "same_quantizer",
    "target_glu", "feature_grad_mult", "quantizer_depth", "quantizer_factor", "latent_vars", "latent_groups",
    "latent_dim", "mask_length", "mask_prob", "mask_selection", "mask_other", "no_mask_overlap",
    "mask_min_space", "require_same_masks", "mask_dropout", "mask_channel_length", "mask_channel_prob",
    "mask_channel_before", "mask_channel_selection", "mask_channel_other", "no_mask_channel_overlap",
    "mask_channel_min_space", "num_negatives", "negatives_from_everywhere", "cross_sample_negatives",
    "codebook_negatives", "latent_temp", "max_positions", "checkpoint_activations", "offload_activations",
    "min_params_to_wrap", "required_seq_len_multiple", "crop_seq_to_multiple", "depthwise_conv_kernel_size",
    "fp16", "label_rate", "skip_masked", "skip_nomask", "adp_dim", "adp_act_fn", "adp_trf_idx", "normalize",
    "layerdrop", "drop_path",
}
_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_accurate": "gelu_new"}
_EXTRACTOR_MODES = {"default": "group", "layer_norm": "layer"}
_DEFAULTS = {  # fairseq's / Microsoft's defaults for fields an old config may lack
    "extractor_mode": "default", "encoder_layers": 12, "encoder_embed_dim": 768, "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12, "activation_fn": "gelu", "layer_norm_first": False,
    "conv_feature_layers": "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] + [(512, 2, 2)]",
    "conv_bias": False, "conv_pos": 128, "conv_pos_groups": 16, "num_buckets": 320, "max_distance": 1280,
}


def parse_conv_layers(text: str) -> list[tuple[int, int, int]]:
    """fairseq's `conv_feature_layers` string, e.g. "[(512,10,5)] + [(512,3,2)] * 4", evaluated
    without `eval`: list/tuple literals, `+` of lists, `*` of a list by an int."""

    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return value(node.left) + value(node.right)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            return value(node.left) * value(node.right)
        raise ValueError(ast.dump(node))

    try:
        layers = value(ast.parse(str(text), mode="eval").body)
        if not layers or not all(isinstance(t, tuple) and len(t) == 3 for t in layers):
            raise ValueError("not a list of (dim, kernel, stride)")
    except (SyntaxError, ValueError) as error:
        raise CheckpointFormatError(f"conv_feature_layers {text!r} is not a list of (dim, kernel, stride) "
                                    f"({error})") from None
    return layers


def hf_config(original: OriginalCheckpoint, path: str | Path = "checkpoint"):
    """The transformers config of the network the checkpoint's fields describe."""
    from transformers import HubertConfig, Wav2Vec2Config, WavLMConfig

    fields = original.model_cfg
    wavlm_only = {"num_buckets", "max_distance", "relative_position_embedding", "gru_rel_pos",
                  "expand_attention_head_size"}
    known = set(_MAPPED) | set(_REQUIRED) | _TRAINING_ONLY
    if original.strict_fields:
        unknown = sorted(k for k in fields if k not in known)
        if unknown:
            raise CheckpointFormatError(f"{path}: config fields speechtok does not know how to map: "
                                        f"{', '.join(unknown)} (refused rather than ignored)")
    for name, allowed in _REQUIRED.items():
        if name in fields and fields[name] not in allowed and (original.family == "wavlm" or name not in wavlm_only):
            raise CheckpointFormatError(f"{path}: {name}={fields[name]!r} builds a network transformers' "
                                        f"{original.family} model does not have (supported: {sorted(map(str, allowed))})")

    def get(name):
        return fields[name] if fields.get(name) is not None else _DEFAULTS[name]

    activation = get("activation_fn")
    if activation not in _ACTIVATIONS:
        raise CheckpointFormatError(f"{path}: activation_fn={activation!r} is not one of {sorted(_ACTIVATIONS)}")
    mode = get("extractor_mode")
    if mode not in _EXTRACTOR_MODES:
        raise CheckpointFormatError(f"{path}: extractor_mode={mode!r} is not one of {sorted(_EXTRACTOR_MODES)}")
    conv = parse_conv_layers(get("conv_feature_layers"))
    common = dict(
        num_hidden_layers=int(get("encoder_layers")), hidden_size=int(get("encoder_embed_dim")),
        intermediate_size=int(get("encoder_ffn_embed_dim")), num_attention_heads=int(get("encoder_attention_heads")),
        hidden_act=_ACTIVATIONS[activation], feat_extract_norm=_EXTRACTOR_MODES[mode],
        do_stable_layer_norm=bool(get("layer_norm_first")), conv_dim=[c[0] for c in conv],
        conv_kernel=[c[1] for c in conv], conv_stride=[c[2] for c in conv], conv_bias=bool(get("conv_bias")),
        num_conv_pos_embeddings=int(get("conv_pos")), num_conv_pos_embedding_groups=int(get("conv_pos_groups")),
        feat_extract_activation="gelu", layer_norm_eps=1e-5,
    )
    if original.family == "wavlm":
        return WavLMConfig(**common, num_buckets=int(get("num_buckets")), max_bucket_distance=int(get("max_distance")))
    if original.family == "hubert":
        return HubertConfig(**common, feat_proj_layer_norm=True, conv_pos_batch_norm=False)
    return Wav2Vec2Config(**common)


# ---------------------------------------------------------------------------------------------
# Weights -> transformers names

# (original name pattern, transformers name); `{g}` / `{v}` stand for the target model's weight-norm
# halves of the positional conv (parametrizations.weight.original0/1, or weight_g/_v).
_RENAMES = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.(?:1\.)?(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"mask_emb", r"masked_spec_embed"),
    (r"encoder\.pos_conv\.0\.bias", r"encoder.pos_conv_embed.conv.bias"),
    (r"encoder\.pos_conv\.0\.(?:weight_g|parametrizations\.weight\.original0)", r"encoder.pos_conv_embed.conv.{g}"),
    (r"encoder\.pos_conv\.0\.(?:weight_v|parametrizations\.weight\.original1)", r"encoder.pos_conv_embed.conv.{v}"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.([qkv]|out)_proj\.(weight|bias)", r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn\.grep_linear\.(weight|bias)", r"encoder.layers.\1.attention.gru_rel_pos_linear.\2"),
    (r"encoder\.layers\.(\d+)\.self_attn\.grep_a", r"encoder.layers.\1.attention.gru_rel_pos_const"),
    (r"encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.weight", r"encoder.layers.\1.attention.rel_attn_embed.weight"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
]
_RENAMES = [(re.compile(pattern), target) for pattern, target in _RENAMES]
# Pre-training heads and targets, not part of the encoder.
_TRAINING_ONLY_WEIGHTS = re.compile(r"(quantizer|project_q|project_inp|final_proj|target_glu)\..*|label_embs_concat")


def hf_state_dict(original: OriginalCheckpoint, model: torch.nn.Module, path: str | Path = "checkpoint") -> dict:
    """The checkpoint's encoder weights under the model's names; every key accounted for."""
    target = model.state_dict()
    g = "parametrizations.weight.original0" if any(k.endswith("original0") for k in target) else "weight_g"
    v = "parametrizations.weight.original1" if g.endswith("original0") else "weight_v"
    mapped, unmapped = {}, []
    for name, tensor in original.state.items():
        for pattern, replacement in _RENAMES:
            if pattern.fullmatch(name):
                mapped[pattern.sub(replacement, name).replace("{g}", g).replace("{v}", v)] = tensor
                break
        else:
            if not _TRAINING_ONLY_WEIGHTS.fullmatch(name):
                unmapped.append(name)
    if unmapped:
        raise CheckpointFormatError(f"{path}: weights that map to nothing in transformers' {original.family} model: "
                                    f"{', '.join(unmapped[:10])}{' ...' if len(unmapped) > 10 else ''}")
    projection = "feature_projection.projection"
    if f"{projection}.weight" not in mapped and f"{projection}.weight" in target:
        # fairseq has no projection when the conv and transformer widths are equal: identity.
        weight = target[f"{projection}.weight"]
        if weight.shape[0] != weight.shape[1]:
            raise CheckpointFormatError(f"{path}: post_extract_proj is missing but the widths differ "
                                        f"({weight.shape[1]} -> {weight.shape[0]})")
        mapped[f"{projection}.weight"] = torch.eye(weight.shape[0])
        mapped[f"{projection}.bias"] = torch.zeros(weight.shape[0])
    if "masked_spec_embed" in target and "masked_spec_embed" not in mapped:
        mapped["masked_spec_embed"] = target["masked_spec_embed"]  # used only when training with masks
    missing = sorted(set(target) - set(mapped))
    unexpected = sorted(set(mapped) - set(target))
    if missing or unexpected:
        raise CheckpointFormatError(
            f"{path}: the weights do not fit transformers' {original.family} model built from the config: "
            + (f"missing {', '.join(missing[:10])}" if missing else "")
            + ("; " if missing and unexpected else "")
            + (f"unexpected {', '.join(unexpected[:10])}" if unexpected else ""))
    for name, tensor in mapped.items():
        if tuple(tensor.shape) != tuple(target[name].shape):
            raise CheckpointFormatError(f"{path}: {name} has shape {tuple(tensor.shape)}, the config gives "
                                        f"{tuple(target[name].shape)}")
    return mapped


# ---------------------------------------------------------------------------------------------
# The whole path


@register("ssl-checkpoint")
def load_original(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """The transformers model a checkpoint holds, in eval mode, and its feature-extractor settings
    (`do_normalize`, `return_attention_mask`, `sampling_rate`)."""
    from transformers import AutoModel

    original = recognise(path)
    config = hf_config(original, path)
    model = AutoModel.from_config(config)
    model.load_state_dict(hf_state_dict(original, model, path), strict=True)
    extractor = {
        "do_normalize": original.normalize,
        # transformers' convention: layer-norm ("large") feature extractors take attention masks.
        "return_attention_mask": config.feat_extract_norm == "layer",
        "sampling_rate": 16000,
    }
    return model.eval(), extractor


def convert(path: str | Path, out_dir: str | Path) -> Path:
    """Write a checkpoint as a transformers directory: config.json, model.safetensors and the
    feature extractor's preprocessor_config.json."""
    from transformers import Wav2Vec2FeatureExtractor

    model, extractor = load_original(path)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    Wav2Vec2FeatureExtractor(feature_size=1, padding_value=0.0, **extractor).save_pretrained(out_dir)
    return out_dir


__all__ = ["CheckpointFormatError", "OriginalCheckpoint", "convert", "hf_config", "hf_state_dict",
           "load_original", "parse_conv_layers", "read_checkpoint", "recognise"]
