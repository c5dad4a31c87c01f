"""Fixtures: tiny random SSL models saved like hub checkpoints, and generated speech.

Nothing is downloaded: models are built from configs, saved with `save_pretrained` into a temp
dir and loaded back through the same code path a user's hub model takes.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

SR = 16000

# name -> (model family, feature-extractor norm, stable layer norm, do_normalize)
MODEL_VARIANTS = {
    "wav2vec2-group": ("wav2vec2", "group", False, False),  # wav2vec2-base layout
    "wav2vec2-layer-stable": ("wav2vec2", "layer", True, True),  # wav2vec2-large-lv60 layout
    "wav2vec2-layer": ("wav2vec2", "layer", False, True),  # layer-norm conv, post-LN encoder
    "hubert-group": ("hubert", "group", False, False),  # hubert-base layout
    "hubert-layer-stable": ("hubert", "layer", True, True),  # hubert-large layout
    "wavlm-group": ("wavlm", "group", False, False),  # wavlm-base layout
    "wavlm-layer-stable": ("wavlm", "layer", True, True),  # wavlm-large layout
    "data2vec-audio": ("data2vec-audio", "layer", False, True),
}


def tiny_config(family: str, norm: str, stable: bool, layers: int = 3):
    from transformers import Data2VecAudioConfig, HubertConfig, Wav2Vec2Config, WavLMConfig

    common = dict(
        hidden_size=64, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=128,
        conv_dim=(32,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    )
    if family == "data2vec-audio":
        # data2vec's positional embedding is a stack of `num_conv_pos_embeddings` conv layers
        return Data2VecAudioConfig(**{**common, "num_conv_pos_embeddings": 2, "conv_pos_kernel_size": 5})
    cls = {"wav2vec2": Wav2Vec2Config, "hubert": HubertConfig, "wavlm": WavLMConfig}[family]
    return cls(**common, feat_extract_norm=norm, do_stable_layer_norm=stable)


def save_tiny_model(directory: Path, variant: str, layers: int = 3, seed: int = 0) -> Path:
    from transformers import AutoModel, Wav2Vec2FeatureExtractor

    family, norm, stable, do_normalize = MODEL_VARIANTS[variant]
    torch.manual_seed(seed)
    model = AutoModel.from_config(tiny_config(family, norm, stable, layers)).eval()
    # Random init leaves LayerNorm/GroupNorm affine at 1/0; perturb them so a skipped or
    # misplaced norm changes the output.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(directory)
    Wav2Vec2FeatureExtractor(
        sampling_rate=SR, do_normalize=do_normalize, return_attention_mask=norm == "layer"
    ).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """Factory: path of a saved tiny model of `variant` (cached per session)."""
    cache = {}

    def make(variant: str, layers: int = 3) -> Path:
        key = (variant, layers)
        if key not in cache:
            cache[key] = save_tiny_model(tmp_path_factory.mktemp(variant), variant, layers)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def speech_files(tmp_path_factory) -> list[Path]:
    """Real synthetic speech from espeak-ng (22.05 kHz wav), or generated vowel-like audio."""
    from speechtok.example_audio import write_example_audio

    return write_example_audio(tmp_path_factory.mktemp("speech"), count=6)


@pytest.fixture(scope="session")
def speech_waves(speech_files) -> list[np.ndarray]:
    from speechtok.audio import load_audio

    return [load_audio(p, SR) for p in speech_files]


@pytest.fixture(scope="session")
def varied_waves(speech_waves) -> list[np.ndarray]:
    """20 utterances of different lengths (0.3 s to ~4 s), cut from the speech."""
    rng = np.random.default_rng(0)
    joined = np.concatenate(speech_waves)
    out = []
    for i in range(20):
        length = int(rng.integers(int(0.3 * SR), int(4.0 * SR)))
        start = int(rng.integers(0, len(joined) - length))
        out.append(joined[start : start + length].copy())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1; yields its endpoint. The AWS variables point clients at it.
    One for the whole run: fsspec caches its file system instances, with the endpoint they saw."""
    pytest.importorskip("s3fs", reason="s3:// inputs need s3fs: pip install 'speechtok[s3]'")
    server_module = pytest.importorskip("moto.server", reason="the S3 tests need moto[server]")
    port = free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def phone_speech(tmp_path_factory) -> Path:
    """24 utterances of generated speech (phones known at 100 Hz) from 4 'speakers' (formant
    scales), ids `spkN-M`, in ROOT/audio; their phones in ROOT/phones.tsv (fairseq's frame tsv)."""
    import soundfile as sf

    from speechtok.example_audio import frame_phones, timed_utterance

    root = tmp_path_factory.mktemp("phone-speech")
    (root / "audio").mkdir()
    rng = np.random.default_rng(1)
    lines = []
    for u in range(24):
        speaker = u % 4
        wave, spans = timed_utterance(rng, seconds=3.0, sample_rate=SR, formant_scale=(0.85, 0.95, 1.05, 1.15)[speaker])
        uid = f"spk{speaker}-{u}"
        sf.write(root / "audio" / f"{uid}.wav", wave, SR)
        lines.append(f"{uid}\t{','.join(frame_phones(spans, len(wave) / SR))}")
    (root / "phones.tsv").write_text("\n".join(lines) + "\n")
    return root
