"""Original checkpoints (fairseq, Microsoft WavLM, s3prl) load into the same network.

A random transformers model is written out in each original format by the mapping below, which
goes the other way (transformers name -> fairseq / Microsoft name) and is written independently
of speechtok's loader; loading it back must give the same weights and the same hidden states at
every layer.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from speechtok import SSLEncoder, UnsafePickleError
from speechtok.formats.ssl_checkpoints import CheckpointFormatError, parse_conv_layers

from .conftest import SR
from .test_ssl_encoder import reference_layers

# ---------------------------------------------------------------------------------------------
# transformers -> original, as fairseq's and Microsoft's modules name things

_LAYER_MODULES = {
    "attention.q_proj": "self_attn.q_proj", "attention.k_proj": "self_attn.k_proj",
    "attention.v_proj": "self_attn.v_proj", "attention.out_proj": "self_attn.out_proj",
    "attention.gru_rel_pos_linear": "self_attn.grep_linear", "layer_norm": "self_attn_layer_norm",
    "feed_forward.intermediate_dense": "fc1", "feed_forward.output_dense": "fc2",
    "final_layer_norm": "final_layer_norm",
}


def original_name(name: str, layer_norm_convs: bool) -> str:
    parts = name.split(".")
    if parts[0] == "feature_extractor":  # feature_extractor.conv_layers.<i>.<conv|layer_norm>.<param>
        # fairseq: Sequential(conv, dropout, norm, gelu); the layer norm sits in its own
        # Sequential(TransposeLast, LayerNorm, TransposeLast)
        slot = "0" if parts[3] == "conv" else ("2.1" if layer_norm_convs else "2")
        return f"feature_extractor.conv_layers.{parts[2]}.{slot}.{parts[4]}"
    if parts[0] == "feature_projection":
        return {"layer_norm": "layer_norm", "projection": "post_extract_proj"}[parts[1]] + "." + parts[2]
    if name == "masked_spec_embed":
        return "mask_emb"
    if parts[:2] == ["encoder", "pos_conv_embed"]:
        tail = ".".join(parts[3:])
        return "encoder.pos_conv.0." + {"bias": "bias", "parametrizations.weight.original0": "weight_g",
                                        "parametrizations.weight.original1": "weight_v"}[tail]
    if parts[:2] == ["encoder", "layers"]:
        index, rest = parts[2], ".".join(parts[3:])
        if rest == "attention.gru_rel_pos_const":
            return f"encoder.layers.{index}.self_attn.grep_a"
        if rest == "attention.rel_attn_embed.weight":
            return f"encoder.layers.{index}.self_attn.relative_attention_bias.weight"
        module, param = rest.rsplit(".", 1)
        return f"encoder.layers.{index}.{_LAYER_MODULES[module]}.{param}"
    if parts[:2] == ["encoder", "layer_norm"]:
        return name
    raise KeyError(name)


def conv_string(config) -> str:
    """fairseq's compact form: "[(32, 10, 5)] + [(32, 3, 2)] * 4 + ..."."""
    layers = list(zip(config.conv_dim, config.conv_kernel, config.conv_stride))
    groups = [(layer, len(list(run))) for layer, run in itertools.groupby(layers)]
    return " + ".join(f"[{layer}]" + (f" * {n}" if n > 1 else "") for layer, n in groups)


def original_fields(config, family: str) -> dict:
    fields = {
        "_name": family, "extractor_mode": "layer_norm" if config.feat_extract_norm == "layer" else "default",
        "encoder_layers": config.num_hidden_layers, "encoder_embed_dim": config.hidden_size,
        "encoder_ffn_embed_dim": config.intermediate_size, "encoder_attention_heads": config.num_attention_heads,
        "activation_fn": "gelu", "layer_norm_first": config.do_stable_layer_norm,
        "conv_feature_layers": conv_string(config), "conv_bias": config.conv_bias,
        "conv_pos": config.num_conv_pos_embeddings, "conv_pos_groups": config.num_conv_pos_embedding_groups,
        # training-time fields a real config carries
        "dropout": 0.1, "attention_dropout": 0.1, "encoder_layerdrop": 0.05, "mask_prob": 0.65,
        "mask_length": 10, "feature_grad_mult": 0.1, "final_dim": 256, "layer_type": "transformer",
        "checkpoint_activations": False, "required_seq_len_multiple": 2,
    }
    if family == "wav2vec2":
        fields.update(quantize_targets=True, latent_vars=320, pos_conv_depth=1)
    if family == "hubert":
        fields.update(label_rate=50, skip_masked=False, untie_final_proj=False)
    if family == "wavlm":
        del fields["_name"], fields["layer_type"], fields["required_seq_len_multiple"]
        fields.update(relative_position_embedding=True, num_buckets=config.num_buckets,
                      max_distance=config.max_bucket_distance, gru_rel_pos=True, expand_attention_head_size=-1)
    return fields


def original_state(model, family: str) -> dict:
    layer_norm_convs = model.config.feat_extract_norm == "layer"
    state = {original_name(k, layer_norm_convs): v.clone() for k, v in model.state_dict().items()}
    dim = model.config.hidden_size
    if family == "wav2vec2":  # pre-training heads, not part of the encoder
        state.update({"quantizer.vars": torch.randn(1, 320, 8), "quantizer.weight_proj.weight": torch.randn(320, 32),
                      "project_q.weight": torch.randn(16, 8), "final_proj.weight": torch.randn(16, dim)})
    if family == "hubert":
        state.update({"label_embs_concat": torch.randn(100, 16), "final_proj.weight": torch.randn(16, dim)})
    return state


def write_checkpoint(path, model, family: str, form: str, normalize: bool):
    fields = original_fields(model.config, family)
    state = original_state(model, family)
    task = {"_name": "audio_pretraining", "normalize": normalize, "sample_rate": 16000, "data": "/data"}
    extra = {"optimizer_history": [{"optimizer_name": "Adam", "num_updates": 400000}],
             "extra_state": {"best": np.float64(3.25), "epoch": 12}}
    if form == "fairseq-cfg":
        ckpt = {"cfg": {"model": fields, "task": task, "common": {"fp16": True}}, "model": state, "args": None, **extra}
    elif form == "fairseq-omegaconf":
        from omegaconf import OmegaConf

        ckpt = {"cfg": OmegaConf.create({"model": fields, "task": task}), "model": state, **extra}
    elif form == "fairseq-args":
        ckpt = {"args": argparse.Namespace(arch=family, **{k: v for k, v in fields.items() if k != "_name"},
                                           normalize=normalize, lr=[0.0005], optimizer="adam", max_tokens=1400000),
                "model": state}
    elif form == "fairseq-finetuned":
        from omegaconf import OmegaConf

        head = {"w2v_encoder.proj.weight": torch.randn(32, model.config.hidden_size),
                "w2v_encoder.proj.bias": torch.randn(32)}
        cfg = OmegaConf.create({
            "model": {"_name": f"{'hubert' if family == 'hubert' else 'wav2vec'}_ctc", "w2v_path": "/x/pre.pt",
                      "normalize": "${task.normalize}", "apply_mask": True, "final_dropout": 0.0,
                      "w2v_args": {"model": fields, "task": task}},
            "task": {"_name": "audio_finetuning", "normalize": normalize}})
        ckpt = {"cfg": cfg, "model": {**{f"w2v_encoder.w2v_model.{k}": v for k, v in state.items()}, **head}}
    elif form == "microsoft":
        ckpt = {"cfg": {**fields, "normalize": normalize}, "model": state}
    elif form == "s3prl":
        ckpt = {"task_cfg": task, "model_cfg": fields, "model_weight": state}
        if family == "hubert":
            ckpt["dictionaries_symbols"] = [["<s>", "<pad>", "</s>", "<unk>"] + [str(i) for i in range(100)]]
    else:
        raise ValueError(form)
    torch.save(ckpt, path)
    return path


def random_model(family: str, norm: str, stable: bool, conv_bias: bool, seed: int = 0):
    from transformers import AutoModel, HubertConfig, Wav2Vec2Config, WavLMConfig

    cls = {"wav2vec2": Wav2Vec2Config, "hubert": HubertConfig, "wavlm": WavLMConfig}[family]
    config = cls(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
                 conv_dim=(32,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm=norm,
                 do_stable_layer_norm=stable, conv_bias=conv_bias)
    torch.manual_seed(seed)
    model = AutoModel.from_config(config).eval()
    with torch.no_grad():  # move norms and biases off their 1/0 init, so a misplaced one shows
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias") or "gru_rel_pos_const" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


# (family, conv norm, stable layer norm, conv bias, format, task normalize)
CASES = {
    "wav2vec2-base/fairseq-cfg": ("wav2vec2", "group", False, False, "fairseq-cfg", False),
    "wav2vec2-base/fairseq-args": ("wav2vec2", "group", False, False, "fairseq-args", False),
    "wav2vec2-large/fairseq-omegaconf": ("wav2vec2", "layer", True, True, "fairseq-omegaconf", True),
    "wav2vec2-large/fine-tuned": ("wav2vec2", "layer", True, True, "fairseq-finetuned", True),
    "wav2vec2-large/s3prl": ("wav2vec2", "layer", True, True, "s3prl", True),
    "hubert-base/fairseq-cfg": ("hubert", "group", False, False, "fairseq-cfg", False),
    "hubert-base/s3prl": ("hubert", "group", False, False, "s3prl", False),
    "hubert-large/fine-tuned": ("hubert", "layer", True, False, "fairseq-finetuned", True),
    "wavlm-base/microsoft": ("wavlm", "group", False, False, "microsoft", False),
    "wavlm-large/microsoft": ("wavlm", "layer", True, True, "microsoft", True),
}


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """case -> (HF directory of the random model, its original-format checkpoint)."""
    from transformers import Wav2Vec2FeatureExtractor

    root = tmp_path_factory.mktemp("originals")
    out = {}
    for case, (family, norm, stable, bias, form, normalize) in CASES.items():
        model = random_model(family, norm, stable, bias)
        hf_dir = root / case.replace("/", "_")
        model.save_pretrained(hf_dir)
        Wav2Vec2FeatureExtractor(do_normalize=normalize, return_attention_mask=norm == "layer").save_pretrained(hf_dir)
        out[case] = (hf_dir, write_checkpoint(root / f"{case.replace('/', '_')}.pt", model, family, form, normalize))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_original_checkpoint_gives_identical_hidden_states(originals, speech_waves, case):
    family, norm, stable, bias, form, normalize = CASES[case]
    hf_dir, checkpoint = originals[case]
    layers = list(range(4))
    ours = SSLEncoder.from_pretrained(str(checkpoint), layers=layers)
    direct = SSLEncoder.from_pretrained(str(hf_dir), layers=layers)
    assert ours.normalize is normalize
    assert ours.model.config.model_type == direct.model.config.model_type
    # every weight arrives where it belongs
    mine, theirs = ours.model.state_dict(), direct.model.state_dict()
    assert set(mine) == set(theirs)
    for name in theirs:
        assert torch.equal(mine[name], theirs[name]), name
    # and every layer is the same tensor: exactly against the transformers directory, and against
    # transformers' own full forward pass
    wave = speech_waves[2]
    got, expected = ours.encode(wave, sample_rate=SR), direct.encode(wave, sample_rate=SR)
    full = reference_layers(hf_dir, wave, normalize)
    for n in layers:
        assert torch.equal(got[f"L{n}"], expected[f"L{n}"]), f"{case} layer {n}"
        torch.testing.assert_close(got[f"L{n}"], full[n], rtol=1e-5, atol=1e-5, msg=f"{case} layer {n}")


def test_normalize_models_normalise_the_whole_utterance_before_chunking(originals, speech_waves):
    """fairseq's `normalize: true`: F.layer_norm over the whole utterance, then max_chunk pieces."""
    hf_dir, checkpoint = originals["wav2vec2-large/s3prl"]
    wave = np.concatenate(speech_waves[:2])
    chunked = SSLEncoder.from_pretrained(str(checkpoint), layers=[2], chunk_seconds=1.0)
    assert chunked.normalize
    got = chunked.encode(wave, sample_rate=SR)["L2"]
    x = wave.astype(np.float64)
    x = ((x - x.mean()) / np.sqrt(x.var() + 1e-5)).astype(np.float32)  # layer norm, written out
    plain = SSLEncoder.from_pretrained(str(hf_dir), layers=[2], normalize=False, chunk_seconds=None)
    pieces = [x[i : i + SR] for i in range(0, len(x), SR)]
    expected = torch.cat([plain.encode(p, sample_rate=SR)["L2"] for p in pieces if len(p) >= 400])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_conv_layer_strings_parse_like_fairseq_without_eval():
    text = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]"
    assert parse_conv_layers(text) == [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    with pytest.raises(CheckpointFormatError):
        parse_conv_layers("__import__('os').system('true')")


def test_unknown_fields_and_weights_are_refused_by_name(originals, tmp_path):
    family, norm, stable, bias, _, _ = CASES["hubert-base/fairseq-cfg"]
    model = random_model(family, norm, stable, bias)
    path = write_checkpoint(tmp_path / "a.pt", model, family, "fairseq-cfg", False)
    ckpt = torch.load(path, weights_only=False)

    ckpt["cfg"]["model"]["mystery_option"] = 3
    torch.save(ckpt, tmp_path / "field.pt")
    with pytest.raises(CheckpointFormatError, match="mystery_option"):
        SSLEncoder.from_pretrained(str(tmp_path / "field.pt"), layers=[1])

    del ckpt["cfg"]["model"]["mystery_option"]
    ckpt["cfg"]["model"]["layer_type"] = "conformer"
    torch.save(ckpt, tmp_path / "conformer.pt")
    with pytest.raises(CheckpointFormatError, match="layer_type='conformer'"):
        SSLEncoder.from_pretrained(str(tmp_path / "conformer.pt"), layers=[1])

    ckpt["cfg"]["model"]["layer_type"] = "transformer"
    ckpt["model"]["encoder.layers.0.adapter.weight"] = torch.zeros(3)
    torch.save(ckpt, tmp_path / "weight.pt")
    with pytest.raises(CheckpointFormatError, match=r"encoder\.layers\.0\.adapter\.weight"):
        SSLEncoder.from_pretrained(str(tmp_path / "weight.pt"), layers=[1])

    del ckpt["model"]["encoder.layers.0.adapter.weight"], ckpt["model"]["encoder.layers.1.fc1.weight"]
    torch.save(ckpt, tmp_path / "missing.pt")
    with pytest.raises(CheckpointFormatError, match=r"missing encoder\.layers\.1\.feed_forward"):
        SSLEncoder.from_pretrained(str(tmp_path / "missing.pt"), layers=[1])


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_with_a_global_off_the_allow_list_is_refused_and_not_run(originals, tmp_path):
    _, checkpoint = originals["hubert-base/fairseq-cfg"]
    ckpt = torch.load(checkpoint, weights_only=False)
    marker = tmp_path / "ran"
    ckpt["extra_state"]["hook"] = _RunsCode(marker)
    evil = tmp_path / "evil.pt"
    torch.save(ckpt, evil)
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system.*Nothing from it was run"):
        SSLEncoder.from_pretrained(str(evil), layers=[1])
    assert not marker.exists()
    # and from the command line: a clear error, exit 2, still nothing run
    result = subprocess.run([sys.executable, "-m", "speechtok.cli", "convert", str(evil), "-o", str(tmp_path / "x")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "system" in result.stderr and "refused" in result.stderr
    assert not marker.exists() and not (tmp_path / "x").exists()


def test_convert_writes_a_transformers_directory(originals, speech_waves, tmp_path):
    for case in ("wavlm-large/microsoft", "hubert-base/s3prl"):
        hf_dir, checkpoint = originals[case]
        out = tmp_path / case.replace("/", "_")
        result = subprocess.run([sys.executable, "-m", "speechtok.cli", "convert", str(checkpoint), "-o", str(out)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        extractor = json.loads((out / "preprocessor_config.json").read_text())
        large = CASES[case][1] == "layer"
        assert extractor["do_normalize"] is CASES[case][5] and extractor["return_attention_mask"] is large
        assert (out / "model.safetensors").exists()
        converted = SSLEncoder.from_pretrained(str(out), layers=[0, 3]).encode(speech_waves[0], sample_rate=SR)
        direct = SSLEncoder.from_pretrained(str(hf_dir), layers=[0, 3]).encode(speech_waves[0], sample_rate=SR)
        for stream in ("L0", "L3"):
            assert torch.equal(converted[stream], direct[stream])


def test_checkpoint_as_encoder_of_a_corpus_job(originals, speech_files, tmp_path):
    """--encoder takes the checkpoint file in every command; the saved tokenizer finds it again."""
    _, checkpoint = originals["wavlm-base/microsoft"]
    out = tmp_path / "tok"
    result = subprocess.run([sys.executable, "-m", "speechtok.cli", "fit-kmeans", *map(str, speech_files[:3]),
                             "--encoder", str(checkpoint), "--layer", "2", "-k", "8", "-o", str(out), "--quiet"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    import speechtok

    tok = speechtok.load(out)
    assert tok.encoder.config()["model"] == str(checkpoint.resolve())
    units = tok.encode(speech_files[0])
    assert units.codes.shape[1] == 1 and units.codes.max() < 8
