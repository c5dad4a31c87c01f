"""Featurizer: s3prl's SUPERB weighted sum of layers, on SSLEncoder output."""

from __future__ import annotations

import pytest
import torch

from speechtok import Featurizer, SSLEncoder

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
