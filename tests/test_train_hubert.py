"""HuBERT's masked prediction against an independent computation from fairseq's definitions
(hubert.py's compute_nce / forward_targets, hubert_criterion.py) on a fixed batch and mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import HubertConfig

from speechtok.train import HubertPretraining, Objective


def tiny_config(**overrides) -> HubertConfig:
    # HuBERT's real conv strides (320 samples per frame: 50 Hz), small widths
    return HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
                        layerdrop=0.0, **overrides)


def batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = [16000, 11200]
    waves = torch.zeros(2, max(lengths))
    attention = torch.zeros(2, max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        waves[i, :n] = torch.from_numpy(rng.standard_normal(n).astype(np.float32) * 0.1)
        attention[i, :n] = 1
    return waves, attention, lengths


def fairseq_nce_logits(x, target, label_embs, temp):
    """compute_nce as fairseq writes it: the positive first, then every label embedding as a
    negative, the one equal to the positive at -inf; cosine similarity / temperature."""
    pos = label_embs[target]  # [S, D]
    negs = label_embs[:, None, :].expand(-1, len(x), -1)  # [K, S, D]
    neg_is_pos = (pos == negs).all(-1)
    candidates = torch.cat([pos[None], negs], dim=0)
    logits = torch.cosine_similarity(x.float(), candidates.float(), dim=-1) / temp
    logits[1:][neg_is_pos] = float("-inf")
    return logits.transpose(0, 1)  # [S, 1 + K]; the target is column 0


@pytest.mark.parametrize("label_rate", [100.0, 50.0])
def test_loss_and_logits_equal_fairseqs_definitions(label_rate):
    torch.manual_seed(0)
    k = 12
    model = HubertPretraining(tiny_config(), num_classes=k, label_rate=label_rate).eval()
    waves, attention, lengths = batch()
    frames = [model.frames(n) for n in lengths]
    ratio = int(label_rate // 50)
    rng = np.random.default_rng(1)
    labels = torch.from_numpy(rng.integers(0, k, (2, frames[0] * ratio)))  # padded with ids past the end
    label_lengths = torch.tensor([f * ratio for f in frames])
    mask = torch.zeros(2, frames[0], dtype=torch.bool)
    mask[0, 3:13] = mask[0, 30:40] = True
    mask[1, 0:10] = mask[1, 20:30] = True
    with torch.no_grad():
        out = model(waves, attention, labels, label_lengths, mask)

        # independently: transformers' own forward with the same mask, fairseq's target positions
        hidden = model.hubert(waves, attention_mask=attention, mask_time_indices=mask).last_hidden_state
        xs, targets = [], []
        for b in range(2):
            for t in range(frames[b]):
                if mask[b, t]:
                    xs.append(hidden[b, t])
                    targets.append(int(labels[b, t * ratio]))  # forward_targets: t x feat2tar_ratio
        projected = model.final_proj(torch.stack(xs))
        logits = fairseq_nce_logits(projected, torch.tensor(targets), model.label_embs, 0.1)
        ce = torch.nn.functional.cross_entropy(logits, torch.zeros(len(xs), dtype=torch.long), reduction="sum")
        features = model.hubert.feature_extractor(waves)
        penalty = features.float().pow(2).mean()
        expected = (ce + 10.0 * penalty * len(xs)) / len(xs)  # hubert_criterion, divided by sample_size

    assert out.frames == len(xs) == int(mask.sum())
    assert torch.equal(out.targets_masked, torch.tensor(targets))
    # fairseq's K + 1 columns as K classes: the positive's own column (-inf there) holds column 0
    as_classes = logits[:, 1:].clone()
    as_classes[torch.arange(len(xs)), torch.tensor(targets)] = logits[:, 0]
    torch.testing.assert_close(out.logits_masked, as_classes, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.feature_penalty, penalty)


def test_feature_extractor_gradient_is_scaled():
    waves, attention, lengths = batch()
    grads = {}
    for mult in (1.0, 0.1):
        torch.manual_seed(0)
        model = HubertPretraining(tiny_config(), 8, 50.0, Objective(feature_grad_mult=mult)).eval()
        frames = model.frames(lengths[0])
        labels = torch.zeros(2, frames, dtype=torch.long)
        mask = torch.zeros(2, frames, dtype=torch.bool)
        mask[:, 5:15] = True
        model(waves, attention, labels, torch.tensor([frames, model.frames(lengths[1])]), mask).loss.backward()
        conv = model.hubert.feature_extractor.conv_layers[0].conv.weight.grad.clone()
        head = model.final_proj.weight.grad.clone()
        grads[mult] = conv, head
    torch.testing.assert_close(grads[0.1][0], 0.1 * grads[1.0][0], rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(grads[0.1][1], grads[1.0][1])  # above the features: unchanged


def test_masks_are_spans_inside_each_utterance():
    model = HubertPretraining(tiny_config(), 8, 50.0)
    lengths = torch.tensor([200, 120])
    mask = model.mask_for(lengths, np.random.default_rng(0))
    again = model.mask_for(lengths, np.random.default_rng(0))
    assert torch.equal(mask, again) and not mask[1, 120:].any()
    assert 0.4 < mask[0].float().mean() < 0.9  # mask_prob 0.8 of spans of 10, overlapping
    starts = (mask[0, 1:] & ~mask[0, :-1]).sum() + int(mask[0, 0])
    runs = torch.diff(torch.cat([torch.tensor([0]), mask[0].int(), torch.tensor([0])])).nonzero().flatten()
    assert all(int(b - a) >= 10 for a, b in zip(runs[::2], runs[1::2])) and starts >= 2
