"""SSLEncoder: truncated runs equal the full model; batching never changes results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechtok import KMeans, SSLEncoder, Tokenizer
from speechtok.encoders.ssl import min_input_length

from .conftest import MODEL_VARIANTS, SR


def reference_layers(model_dir, wave: np.ndarray, do_normalize: bool) -> list[torch.Tensor]:
    """Every layer of the FULL model, through transformers' own forward at batch size 1:
    hidden_states[n] for every n. For stable-layer-norm models hidden_states[L] is block L's output
    before the final encoder LayerNorm (transformers >= 5; that norm only makes last_hidden_state)."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir).eval()
    x = wave.astype(np.float64)
    if do_normalize:  # fairseq: F.layer_norm(wav, wav.shape), eps 1e-5, written out here
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-5)
    with torch.no_grad():
        out = model(torch.tensor(x, dtype=torch.float32)[None], output_hidden_states=True)
    return [h[0] for h in out.hidden_states]


@pytest.mark.parametrize("variant", list(MODEL_VARIANTS))
def test_truncated_layers_equal_full_model(model_dir, speech_waves, variant):
    path = model_dir(variant, layers=4)
    do_normalize = MODEL_VARIANTS[variant][3]
    wave = speech_waves[1]
    full = reference_layers(path, wave, do_normalize)
    assert len(full) == 5
    for n in range(5):
        encoder = SSLEncoder.from_pretrained(str(path), layers=[n])
        assert len(encoder.model.encoder.layers) == n  # only the blocks needed are run
        got = encoder.encode(wave, sample_rate=SR)[f"L{n}"]
        torch.testing.assert_close(got, full[n], rtol=1e-5, atol=1e-5, msg=f"{variant} layer {n}")
    # Several layers in one truncated run give the same tensors.
    encoder = SSLEncoder.from_pretrained(str(path), layers=[1, 3])
    got = encoder.encode(wave, sample_rate=SR)
    for n in (1, 3):
        torch.testing.assert_close(got[f"L{n}"], full[n], rtol=1e-5, atol=1e-5)


def test_stable_last_layer_is_not_normalised(model_dir, speech_waves):
    """Layer L of a stable-layer-norm model is block L's output before the final LayerNorm, like
    every other layer; the normed tensor is the `last_hidden_state` stream, on request only."""
    path = model_dir("wavlm-layer-stable", layers=3)
    enc = SSLEncoder.from_pretrained(str(path), layers=[2, 3])
    assert isinstance(enc.model.encoder.layer_norm, torch.nn.Identity) and enc.streams == ("L2", "L3")
    out = enc.encode(speech_waves[0], sample_rate=SR)
    ln = enc.final_norm
    assert isinstance(ln, torch.nn.LayerNorm)
    # Without its affine part, a LayerNorm output has zero mean per frame: L3 is not one.
    raw = (out["L3"] - ln.bias) / ln.weight
    assert raw.mean(dim=1).abs().max() > 1e-2
    assert out["L2"].mean(dim=1).abs().max() > 1e-2
    both = SSLEncoder.from_pretrained(str(path), layers=[2, 3], last_hidden_state=True)
    normed = both.encode(speech_waves[0], sample_rate=SR)
    torch.testing.assert_close(normed["L3"], out["L3"], rtol=1e-6, atol=1e-6)
    raw = (normed["last_hidden_state"] - ln.bias) / ln.weight
    assert raw.mean(dim=1).abs().max() < 1e-4


@pytest.mark.parametrize("variant", list(MODEL_VARIANTS))
def test_tokens_equal_full_forward_argmin(model_dir, speech_waves, variant):
    path = model_dir(variant, layers=4)
    do_normalize = MODEL_VARIANTS[variant][3]
    # Centroids fitted on real frames of the layer, so they are distinct and assignments meaningful.
    frames = torch.cat([reference_layers(path, w, do_normalize)[2] for w in speech_waves[:2]])
    centroids = KMeans.fit(frames, 16, seed=1).centroids
    tok = Tokenizer(SSLEncoder.from_pretrained(str(path), layers=[2]), {"L2": KMeans(centroids)})
    for wave in speech_waves[2:4]:
        layer = reference_layers(path, wave, do_normalize)[2]
        expected = torch.cdist(layer.double(), centroids.double()).argmin(dim=1).numpy()
        units = tok.encode(wave, sample_rate=SR)
        np.testing.assert_array_equal(units.stream("L2"), expected)


@pytest.mark.parametrize("variant", [v for v, spec in MODEL_VARIANTS.items() if spec[2]])
def test_last_layer_tokens_equal_full_forward_argmin(model_dir, speech_waves, variant):
    """Layer L of a stable-layer-norm ("large") model is hidden_states[L] of a plain full forward:
    the output of block L before the final LayerNorm, not last_hidden_state."""
    from transformers import AutoModel

    path = model_dir(variant, layers=4)
    model = AutoModel.from_pretrained(path).eval()

    def full_forward(wave):
        x = wave.astype(np.float64)
        if MODEL_VARIANTS[variant][3]:  # do_normalize, as fairseq applies it
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-5)
        with torch.no_grad():
            out = model(torch.tensor(x, dtype=torch.float32)[None], output_hidden_states=True)
        return out.hidden_states[4][0], out.last_hidden_state[0]

    centroids = KMeans.fit(torch.cat([full_forward(w)[0] for w in speech_waves[:2]]), 16, seed=1).centroids
    tok = Tokenizer(SSLEncoder.from_pretrained(str(path), layers=[4]), {"L4": KMeans(centroids)})
    for wave in speech_waves[2:4]:
        layer, normed = full_forward(wave)
        expected = torch.cdist(layer.double(), centroids.double()).argmin(dim=1).numpy()
        np.testing.assert_array_equal(tok.encode(wave, sample_rate=SR).stream("L4"), expected)
        # The test tells the two apart: the normalised tensor gives other tokens.
        assert (torch.cdist(normed.double(), centroids.double()).argmin(dim=1).numpy() != expected).any()


@pytest.mark.parametrize("variant", ["wav2vec2-group", "hubert-group", "wavlm-group", "wavlm-layer-stable",
                                     "hubert-layer-stable", "data2vec-audio"])
def test_batching_does_not_change_tokens(model_dir, varied_waves, variant):
    path = model_dir(variant)
    encoder = SSLEncoder.from_pretrained(str(path), layers=[1, 3])
    feats = encoder.encode_batch(varied_waves[:3], sample_rate=SR)
    tok = Tokenizer(encoder, {s: KMeans.fit(torch.cat([f[s] for f in feats]), 32, seed=2) for s in ("L1", "L3")})

    tok.batch_seconds = 1e-6  # every file alone: batch size 1
    alone = tok.encode_batch(varied_waves, sample_rate=SR)
    tok.batch_seconds = 32 * 4.0  # room for all 20 files in one padded batch
    batched = tok.encode_batch(varied_waves, sample_rate=SR)
    for a, b, w in zip(alone, batched, varied_waves):
        assert len(a) == (len(w) - 400) // 320 + 1
        np.testing.assert_array_equal(a.codes, b.codes)

    # The continuous features agree to float precision as well.
    one = encoder.encode_batch(varied_waves[:8], sample_rate=SR, batch_seconds=1e-6)
    many = encoder.encode_batch(varied_waves[:8], sample_rate=SR, batch_seconds=100)
    for x, y in zip(one, many):
        torch.testing.assert_close(x["L3"], y["L3"], rtol=1e-4, atol=1e-4)


def test_padding_would_change_group_norm_without_masking(model_dir, varied_waves):
    """The masked GroupNorm is what makes batches invariant: stock transformers with padding is not."""
    from transformers import AutoModel

    path = model_dir("wav2vec2-group")
    model = AutoModel.from_pretrained(path).eval()
    short, long = varied_waves[0][: SR], np.zeros(3 * SR, dtype=np.float32)
    batch = torch.zeros(2, len(long))
    batch[0, : len(short)] = torch.from_numpy(short)
    with torch.no_grad():
        alone = model(torch.from_numpy(short)[None]).last_hidden_state[0]
        padded = model(batch).last_hidden_state[0, : len(alone)]
    assert (alone - padded).abs().max() > 1e-3
    ours = SSLEncoder.from_pretrained(str(path), layers=[3]).encode_batch([short, long], sample_rate=SR)[0]["L3"]
    torch.testing.assert_close(ours, alone, rtol=1e-4, atol=1e-4)


def test_long_audio_is_chunked_like_fairseq(model_dir, speech_waves):
    """Chunks are encoded independently and concatenated (fairseq's max_chunk)."""
    path = model_dir("hubert-group")
    wave = np.concatenate(speech_waves[:3])
    chunk = 1.0
    encoder = SSLEncoder.from_pretrained(str(path), layers=[2], chunk_seconds=chunk)
    got = encoder.encode(wave, sample_rate=SR)["L2"]
    whole = SSLEncoder.from_pretrained(str(path), layers=[2], chunk_seconds=None)
    step = int(chunk * SR)
    pieces = [wave[i : i + step] for i in range(0, len(wave), step)]
    pieces = [p for p in pieces if len(p) >= 400]
    expected = torch.cat([whole.encode(p, sample_rate=SR)["L2"] for p in pieces])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_layer_out_of_range_and_min_length(model_dir):
    path = model_dir("wavlm-group")
    with pytest.raises(ValueError, match="out of range"):
        SSLEncoder.from_pretrained(str(path), layers=[4])
    assert min_input_length([10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2]) == 400
    enc = SSLEncoder.from_pretrained(str(path), layers=[1])
    assert enc.min_samples == 400 and enc.frame_rate == 50.0
    assert enc.encode(np.zeros(400, np.float32) + 0.1, sample_rate=SR)["L1"].shape[0] == 1
    from speechtok import AudioError

    with pytest.raises(AudioError, match="too short"):
        enc.encode(np.zeros(399, np.float32), sample_rate=SR)


def _torch_runs(dtype: str) -> bool:
    """Whether a torch matmul in `dtype` runs on this CPU (bf16 kernels die with SIGILL on some VMs)."""
    import subprocess
    import sys

    code = f"import torch; torch.nn.Linear(256, 256).to(torch.{dtype})(torch.ones(100, 256, dtype=torch.{dtype}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_close_to_float32(model_dir, speech_waves, dtype):
    if not _torch_runs(dtype):
        pytest.skip(f"torch cannot run {dtype} matmuls on this CPU")
    path = model_dir("hubert-layer-stable")
    f32 = SSLEncoder.from_pretrained(str(path), layers=[2]).encode(speech_waves[0], sample_rate=SR)["L2"]
    half = SSLEncoder.from_pretrained(str(path), layers=[2], dtype=dtype).encode(speech_waves[0], sample_rate=SR)["L2"]
    assert half.dtype == torch.float32  # features come back as float32
    cos = torch.nn.functional.cosine_similarity(f32, half, dim=1)
    assert cos.min() > 0.98
