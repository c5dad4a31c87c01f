"""Featurizer: s3prl's SUPERB weighted sum of layers, on SSLEncoder output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechtok import Featurizer, SSLEncoder
from speechtok.encoders import encoder_from_dict

from .conftest import SR


@pytest.fixture(scope="module")
def features(model_dir, varied_waves):
    encoder = SSLEncoder.from_pretrained(str(model_dir("wavlm-group", layers=3)), layers=[0, 1, 2, 3])
    return encoder.encode_batch(varied_waves[:4], sample_rate=SR)


def test_equal_weights_give_the_mean_of_the_selected_layers(features):
    layers = [0, 2, 3]
    one = features[0]
    got = Featurizer(layers)(one)
    expected = sum(one[f"L{n}"] for n in layers) / len(layers)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    # with per-layer layer norm (no affine), written out
    normed = [(one[f"L{n}"] - one[f"L{n}"].mean(-1, keepdim=True))
              / torch.sqrt(one[f"L{n}"].var(-1, unbiased=False, keepdim=True) + 1e-5) for n in layers]
    torch.testing.assert_close(Featurizer(layers, layer_norm=True)(one), sum(normed) / len(layers),
                               rtol=1e-5, atol=1e-5)


def test_one_layer_passes_through(features):
    one = features[1]
    assert torch.equal(Featurizer(2)(one), one["L2"])
    assert torch.equal(Featurizer([3], layer_norm=True)(one), one["L3"])


def test_weights_are_a_softmax_and_gradients_reach_them(features):
    feat = Featurizer([0, 1, 3], layer_norm=True)
    padded, mask = feat.pad(features)
    assert padded.shape[:2] == mask.shape and mask.sum(1).tolist() == [len(f["L0"]) for f in features]
    assert torch.all(padded[~mask] == 0)
    target = torch.randn(padded.shape[-1])
    loss = ((padded - target) ** 2)[mask].mean()
    loss.backward()
    assert feat.weights.grad is not None and feat.weights.grad.abs().sum() > 0
    # one step moves the softmax weights away from uniform
    with torch.no_grad():
        feat.weights -= 10.0 * feat.weights.grad
    w = feat.layer_weights().detach()
    assert abs(float(w.sum()) - 1.0) < 1e-6 and float(w.max() - w.min()) > 1e-4
    # set weights: the sum is that weighting of the (normed) layers
    feat.weights.data = torch.tensor([0.0, 1.0, -1.0])
    one = features[0]
    stacked = torch.nn.functional.layer_norm(torch.stack([one["L0"], one["L1"], one["L3"]]), one["L0"].shape[-1:])
    expected = (torch.softmax(feat.weights.data, 0)[:, None, None] * stacked).sum(0)
    torch.testing.assert_close(feat(one), expected)


def test_padding_does_not_change_real_frames(features):
    feat = Featurizer([1, 2])
    feat.weights.data = torch.tensor([0.3, -0.7])
    padded, mask = feat.pad(features)
    for i, f in enumerate(features):
        torch.testing.assert_close(padded[i, : len(f["L1"])], feat(f).detach())


def test_missing_layer_is_a_clear_error(features):
    with pytest.raises(KeyError, match="L7"):
        Featurizer([1, 7])(features[0])
    with pytest.raises(ValueError):
        Featurizer([1, 1])


def test_last_hidden_state_stream_gives_s3prls_hidden_states(model_dir, speech_waves, varied_waves):
    """s3prl's hidden states of a stable-layer-norm model are hidden_states[0..L-1] and the
    normalised last_hidden_state; layer L itself stays un-normalised."""
    from transformers import AutoModel

    path = model_dir("wavlm-layer-stable", layers=3)
    x = speech_waves[0].astype(np.float64)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-5)  # the model's do_normalize, written out
    with torch.no_grad():
        out = AutoModel.from_pretrained(path).eval()(torch.tensor(x, dtype=torch.float32)[None],
                                                      output_hidden_states=True)
    hidden, last = [h[0] for h in out.hidden_states], out.last_hidden_state[0]

    enc = SSLEncoder.from_pretrained(str(path), layers=[0, 1, 2], last_hidden_state=True)
    assert len(enc.model.encoder.layers) == 3  # the stream needs every block
    assert enc.streams == ("L0", "L1", "L2", "last_hidden_state")
    one = enc.encode(speech_waves[0], sample_rate=SR)
    torch.testing.assert_close(one["last_hidden_state"], last, rtol=1e-5, atol=1e-5)
    for n in range(3):
        torch.testing.assert_close(one[f"L{n}"], hidden[n], rtol=1e-5, atol=1e-5)

    feat = Featurizer([0, 1, 2, "last_hidden_state"])
    assert feat.streams == ["L0", "L1", "L2", "last_hidden_state"]
    torch.testing.assert_close(feat(one), (hidden[0] + hidden[1] + hidden[2] + last) / 4, rtol=1e-5, atol=1e-5)
    padded, mask = feat.pad(enc.encode_batch(varied_waves[:3], sample_rate=SR))
    assert padded.shape[0] == 3 and mask.sum(1).tolist() == [(len(w) - 400) // 320 + 1 for w in varied_waves[:3]]
    # Without the option, layer L is hidden_states[L]: not normalised.
    plain = SSLEncoder.from_pretrained(str(path), layers=[3]).encode(speech_waves[0], sample_rate=SR)
    torch.testing.assert_close(Featurizer(3)(plain), hidden[3], rtol=1e-5, atol=1e-5)
    assert (hidden[3] - last).abs().max() > 1e-2
    # The option is part of the encoder's config, and survives a rebuild.
    assert enc.to_dict()["last_hidden_state"] is True and "last_hidden_state" not in plain.keys()
    assert "last_hidden_state" in encoder_from_dict(enc.to_dict(), [2]).streams
    assert "last_hidden_state" not in SSLEncoder.from_pretrained(str(path), layers=[3]).to_dict()
    with pytest.raises(ValueError):
        Featurizer([3, "L3"])


def test_last_hidden_state_of_a_base_model_is_layer_l(model_dir, speech_waves):
    """Post-layer-norm models have no norm after the last block: the stream equals layer L."""
    enc = SSLEncoder.from_pretrained(str(model_dir("wavlm-group", layers=3)), layers=[3], last_hidden_state=True)
    one = enc.encode(speech_waves[0], sample_rate=SR)
    assert torch.equal(one["last_hidden_state"], one["L3"])


def test_downstream_example_trains():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "downstream.py"
    result = subprocess.run([sys.executable, str(script), "--steps", "12"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    losses = [float(line.split()[-1]) for line in result.stdout.splitlines() if line.startswith("step")]
    assert losses[-1] < losses[0]
    assert result.stdout.splitlines()[-1].startswith("layer weights: L0")
