"""Tokenizer: encode, save/load, presets resolved from caches the tests lay out, offline errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from sklearn.cluster import MiniBatchKMeans

import speechtok
from speechtok import AudioError, KMeans, MFCCEncoder, SSLEncoder, Tokenizer
from speechtok.hub import MissingFileError

from .conftest import SR, save_tiny_model


@pytest.fixture
def mfcc_tokenizer(speech_waves):
    encoder = MFCCEncoder()
    frames = torch.cat([encoder.encode(w, sample_rate=SR)["mfcc"] for w in speech_waves])
    return Tokenizer(encoder, {"mfcc": KMeans.fit(frames, 20, seed=0)})


def test_mfcc_tokenizer_roundtrip(tmp_path, mfcc_tokenizer, speech_files):
    units = mfcc_tokenizer.encode(speech_files[0])
    assert units.streams == ("mfcc",) and units.frame_rate == 100.0 and units.vocab_sizes == (20,)
    assert units.sample_rate == SR and len(units) == 1 + (units.num_samples - 400) // 160
    features = MFCCEncoder().encode(speech_files[0])["mfcc"]
    np.testing.assert_array_equal(units.stream("mfcc"), mfcc_tokenizer.quantizers["mfcc"].assign(features).numpy())

    mfcc_tokenizer.save_pretrained(tmp_path / "tok")
    config = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    assert config["encoder"] == {"type": "mfcc", "sample_rate": SR}
    import hashlib

    centroids = mfcc_tokenizer.quantizers["mfcc"].centroids.numpy()
    assert config["streams"] == [{"name": "mfcc", "k": 20, "file": "kmeans_mfcc.safetensors",
                                  "sha256": hashlib.sha256(centroids.tobytes()).hexdigest()}]
    loaded = speechtok.load(tmp_path / "tok")
    assert loaded.encode(speech_files[0]) == units
    assert loaded.encode(speech_files[0]).embeddings().shape == (len(units), 1, 39)


def test_ssl_tokenizer_save_load_and_batch(tmp_path, model_dir, speech_files):
    path = model_dir("hubert-group", layers=3)
    encoder = SSLEncoder.from_pretrained(str(path), layers=[1, 3])
    feats = encoder.encode_batch(speech_files)
    quantizers = {s: KMeans.fit(torch.cat([f[s] for f in feats]), 12, seed=0) for s in ("L1", "L3")}
    tok = Tokenizer(encoder, quantizers)
    tok.save_pretrained(tmp_path / "tok")
    loaded = speechtok.load(tmp_path / "tok")
    assert loaded.streams == ("L1", "L3") and loaded.encoder.layers == [1, 3]
    batch = loaded.encode_batch(speech_files)
    for f, u in zip(speech_files, batch):
        assert u == tok.encode(f)
        assert u.codes.shape[1] == 2
    assert repr(loaded).startswith("Tokenizer(")


def test_bad_input_names_the_file(tmp_path, mfcc_tokenizer, speech_files):
    bad = tmp_path / "broken.flac"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(AudioError, match="broken.flac"):
        mfcc_tokenizer.encode_batch([speech_files[0], bad])


def test_load_errors(tmp_path):
    with pytest.raises(KeyError, match="neither a tokenizer directory nor a preset"):
        speechtok.load("no-such-preset")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        speechtok.load(tmp_path)


# --- presets, resolved from caches laid out by the test -------------------------------------------

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def lay_out_hub_repo(cache: Path, repo_id: str, files: dict[str, Path]):
    """The Hugging Face cache layout hf_hub_download reads offline."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(FAKE_COMMIT)
    for rel, src in files.items():
        dest = repo / "snapshots" / FAKE_COMMIT / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)


def run_offline(code: str, hub_cache: Path, speechtok_cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_CACHE=str(hub_cache), HF_HUB_OFFLINE="1", SPEECHTOK_CACHE=str(speechtok_cache))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_speechbrain_preset_from_hub_cache(tmp_path, speech_files):
    """`speechbrain-wavlm-k1000` resolves the WavLM model and SpeechBrain's k-means file name from
    the HF cache; tokens equal sklearn's predict on the full model's layer 7."""
    from transformers import AutoModel

    model_dir = save_tiny_model(tmp_path / "wavlm", "wavlm-layer-stable", layers=8)
    model = AutoModel.from_pretrained(model_dir).eval()
    wave = speechtok.load_audio(speech_files[3], SR)
    x = torch.from_numpy(wave)
    x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-5)  # do_normalize=True model
    with torch.no_grad():
        layer7 = model(x[None], output_hidden_states=True).hidden_states[7][0].numpy()
    rng = np.random.default_rng(0)
    sk = MiniBatchKMeans(n_clusters=1000, n_init=1, max_iter=2, batch_size=2048, random_state=0)
    sk.fit(np.concatenate([layer7, rng.standard_normal((3000, 64)).astype(np.float32) * layer7.std()]))
    joblib.dump(sk, tmp_path / "km.pt")

    hub = tmp_path / "hub"
    lay_out_hub_repo(hub, "microsoft/wavlm-large", {p.name: p for p in model_dir.iterdir()})
    lay_out_hub_repo(hub, "speechbrain/hifigan-wavlm-k1000-LibriTTS",
                     {"kmeans/LibriSpeech_wavlm_k1000_L7.pt": tmp_path / "km.pt"})
    code = (
        "import speechtok, json\n"
        "tok = speechtok.load('speechbrain-wavlm-k1000', layers=[7])\n"
        f"u = tok.encode({str(speech_files[3])!r})\n"
        "print(json.dumps({'streams': u.streams, 'k': u.vocab_sizes, 'codes': u.codes[:, 0].tolist(),"
        " 'kept': len(tok.encoder.model.encoder.layers)}))\n"
    )
    result = run_offline(code, hub, tmp_path / "st")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["streams"] == ["L7"] and out["k"] == [1000] and out["kept"] == 7
    np.testing.assert_array_equal(out["codes"], sk.predict(layer7))


def test_fairseq_preset_from_url_cache(tmp_path, speech_files):
    """The fairseq preset finds its .bin under SPEECHTOK_CACHE and its model in the HF cache."""
    model_dir = save_tiny_model(tmp_path / "hubert", "hubert-group", layers=9)
    sk = MiniBatchKMeans(n_clusters=500, n_init=1, max_iter=2, batch_size=1024, random_state=0)
    sk.fit(np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32))
    km_path = tmp_path / "st" / "fairseq" / "hubert" / "hubert_base_ls960_L9_km500.bin"
    km_path.parent.mkdir(parents=True)
    joblib.dump(sk, km_path)
    hub = tmp_path / "hub"
    lay_out_hub_repo(hub, "facebook/hubert-base-ls960", {p.name: p for p in model_dir.iterdir()})
    code = (
        "import speechtok\n"
        "tok = speechtok.load('hubert-base-ls960-L9-km500')\n"
        f"u = tok.encode({str(speech_files[0])!r})\n"
        "print(tok.encoder.normalize, u.streams, u.vocab_sizes, len(u) > 0)\n"
    )
    result = run_offline(code, hub, tmp_path / "st")
    assert result.returncode == 0, result.stderr
    # fairseq's base models are used without waveform normalisation, whatever the HF config says
    assert result.stdout.strip().splitlines()[-1] == "False ('L9',) (500,) True"


def test_offline_missing_files_fail_at_once_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SPEECHTOK_CACHE", str(tmp_path / "st"))
    with pytest.raises(MissingFileError) as err:
        speechtok.load("hubert-base-ls960-L9-km500")
    message = str(err.value)
    assert "https://dl.fbaipublicfiles.com/hubert/hubert_base_ls960_L9_km500.bin" in message
    assert str(tmp_path / "st" / "fairseq" / "hubert" / "hubert_base_ls960_L9_km500.bin") in message

    result = run_offline("import speechtok; speechtok.load('speechbrain-hubert-k1000', layers=[7])",
                         tmp_path / "emptyhub", tmp_path / "st")
    assert result.returncode != 0
    assert "hf download speechbrain/hifigan-hubert-k1000-LibriTTS kmeans/LibriSpeech_hubert_k1000_L7.pt" in result.stderr


def run_without_network(code: str, tmp_path: Path, hub_cache: Path) -> subprocess.CompletedProcess:
    """`code` in a fresh process that cannot reach any host (every request goes to a proxy on a
    closed local port) and is NOT told it is offline: HF_HUB_OFFLINE is unset."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in {"HF_HUB_OFFLINE", "NO_PROXY", "HF_ENDPOINT"}}
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens, a connect is refused at once
    env.update(HTTPS_PROXY=dead, HTTP_PROXY=dead, https_proxy=dead, http_proxy=dead, HF_HOME=str(tmp_path / "hf-home"),
               HF_HUB_CACHE=str(hub_cache), SPEECHTOK_CACHE=str(tmp_path / "st"))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_no_network_fails_at_once_listing_every_missing_file(tmp_path):
    """Without network (and without HF_HUB_OFFLINE), a preset fails in seconds, not after the hub's
    retries, and one error lists every missing file with its command: the k-means files and the
    SSL model when it is not in the HF cache - and not the model when it is."""
    hub = tmp_path / "hub"
    lay_out_hub_repo(hub, "microsoft/wavlm-large",
                     {p.name: p for p in save_tiny_model(tmp_path / "wavlm", "wavlm-layer-stable", layers=3).iterdir()})
    code = (
        "import json, time, speechtok\n"
        "from speechtok.hub import MissingFileError\n"
        "out = {}\n"
        "for name in ['speechbrain-hubert-k1000', 'speechbrain-wavlm-k1000', 'hubert-base-ls960-L9-km500']:\n"
        "    start = time.monotonic()\n"
        "    try:\n"
        "        speechtok.load(name)\n"
        "    except MissingFileError as error:\n"
        "        out[name] = [time.monotonic() - start, str(error)]\n"
        "start = time.monotonic()\n"  # a cached model loads from the cache, without asking the hub
        "encoder = speechtok.SSLEncoder.from_pretrained('microsoft/wavlm-large', [3])\n"
        "out['cached model'] = [time.monotonic() - start, encoder.source]\n"
        "print(json.dumps(out))\n"
    )
    result = run_without_network(code, tmp_path, hub)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(out) == {"speechbrain-hubert-k1000", "speechbrain-wavlm-k1000", "hubert-base-ls960-L9-km500",
                        "cached model"}
    assert out["cached model"][1] == "microsoft/wavlm-large"
    for seconds, _ in out.values():
        assert seconds < 5
    for encoder, model, cached in [("hubert", "facebook/hubert-large-ll60k", False), ("wavlm", "microsoft/wavlm-large", True)]:
        message = out[f"speechbrain-{encoder}-k1000"][1]
        assert f"needs {6 + (not cached)} file(s)" in message
        for layer in (1, 3, 7, 12, 18, 23):
            assert (f"hf download speechbrain/hifigan-{encoder}-k1000-LibriTTS "
                    f"kmeans/LibriSpeech_{encoder}_k1000_L{layer}.pt") in message
        assert (f"hf download {model}\n" in message) is not cached
        assert str(hub) in message
    message = out["hubert-base-ls960-L9-km500"][1]
    assert "needs 2 file(s)" in message and "hf download facebook/hubert-base-ls960\n" in message
    assert "https://dl.fbaipublicfiles.com/hubert/hubert_base_ls960_L9_km500.bin" in message
    assert str(tmp_path / "st" / "fairseq" / "hubert" / "hubert_base_ls960_L9_km500.bin") in message


@pytest.mark.parametrize("name", ["/no/such/dir", "./model", "../model", "~/no-such-model", "a/b/c", "hubert.pt"])
def test_missing_local_encoder_path_is_not_a_hub_id(tmp_path, monkeypatch, name):
    """A name that can only be a path, and is not there, is reported as missing, not as a hub
    model to `hf download`."""
    from speechtok.encoders import build_encoder
    from speechtok.errors import NotFoundError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(NotFoundError, match="no such file or directory") as err:
        build_encoder(name, [3])
    assert "hf download" not in str(err.value) and not isinstance(err.value, MissingFileError)


def test_hub_ids_and_paths_told_apart(tmp_path, monkeypatch):
    from speechtok.hub import local_or_hub, looks_like_path

    for hub_id in ["microsoft/wavlm-large", "facebook/hubert-base-ls960", "Qwen/Qwen2.5-7B", "model"]:
        assert not looks_like_path(hub_id) and local_or_hub(hub_id) == hub_id
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    assert local_or_hub("~/models") == str(tmp_path / "models")


def test_preset_layer_validation():
    with pytest.raises(ValueError, match="layers"):
        speechtok.load("speechbrain-wavlm-k1000", layers=[5])


def test_url_download_is_atomic(tmp_path, monkeypatch):
    """A URL file lands in SPEECHTOK_CACHE under its final name only when complete."""
    from speechtok.hub import url_file

    source = tmp_path / "published.bin"
    source.write_bytes(b"x" * 1000)
    monkeypatch.setenv("SPEECHTOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    got = url_file(source.as_uri(), "fairseq/a/published.bin")
    assert got == tmp_path / "cache" / "fairseq" / "a" / "published.bin" and got.read_bytes() == b"x" * 1000
    with pytest.raises(MissingFileError, match="Download failed"):
        url_file((tmp_path / "missing.bin").as_uri(), "fairseq/a/missing.bin")
    assert sorted(p.name for p in got.parent.iterdir()) == ["published.bin"]  # no partial file left
