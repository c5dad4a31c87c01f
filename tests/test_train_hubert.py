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
                        layerdrop=0.0, mask_time_prob=0.8, mask_time_length=10, mask_time_min_masks=2, **overrides)


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


# --- the training run -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """16 + 4 utterances of 3 s generated speech, fairseq manifests, MFCC K=20 labels."""
    import soundfile as sf
    from typer.testing import CliRunner

    from speechtok.cli import app
    from speechtok.example_audio import timed_utterance

    root = tmp_path_factory.mktemp("hubert-data")
    rng = np.random.default_rng(0)
    (root / "audio").mkdir()
    for split, count in [("train", 16), ("valid", 4)]:
        lines = [str(root / "audio")]
        for i in range(count):
            wave, _ = timed_utterance(rng, seconds=3.0, sample_rate=16000)
            sf.write(root / "audio" / f"{split}{i}.wav", wave, 16000)
            lines.append(f"{split}{i}.wav\t{len(wave)}")
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["hubert-labels", "--train", str(root / "train.tsv"), "--valid",
                                      str(root / "valid.tsv"), "-e", "mfcc", "-k", "20", "-o", str(root / "labels"), "-q"])
    assert result.exit_code == 0, result.output
    return root


def train_args(root, out, steps=40, every=5):
    return ["train", "hubert", "--train", root / "train.tsv", "--valid", root / "valid.tsv", "--labels", root / "labels",
            "--config", "tiny", "-o", out, "--max-steps", steps, "--checkpoint-every", every, "--batch-seconds", 9, "-q"]


def test_batches_crop_audio_and_labels_together(labelled):
    from speechtok.train import read_split
    from speechtok.train.data import batch_plan, collate

    split = read_split(labelled / "train.tsv", labelled / "labels")
    assert (split.num_classes, split.label_rate, len(split)) == (20, 100.0, 16)
    plan = batch_plan(split.sizes, 9 * 16000, 2 * 16000, 32000 - 1, np.random.default_rng(0))
    assert sorted(i for b in plan for i in b) == list(range(16))
    assert all(len(b) * min(max(int(split.sizes[i]) for i in b), 32000) <= 9 * 16000 or len(b) == 1 for b in plan)
    batch = collate(split, plan[0], 2 * 16000, np.random.default_rng(3))  # crops to 2 s
    assert batch["input_values"].shape == (len(plan[0]), 32000)
    import soundfile as sf

    for row, i, labels, n in zip(batch["input_values"], plan[0], batch["labels"], batch["label_lengths"]):
        wave, _ = sf.read(split.paths[i], dtype="float32")
        start = int(np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(wave, 32000)[:, :50]
                                          == row.numpy()[:50], axis=1))[0])  # where the crop came from
        assert np.array_equal(wave[start : start + 32000], row.numpy())
        first = round(start * 100 / 16000)
        assert labels[: int(n)].tolist() == split.labels[i][first : first + 200].tolist()


def test_a_killed_run_resumes_to_the_parameters_of_an_uninterrupted_one(labelled, tmp_path):
    import signal
    import time

    from safetensors.torch import load_file

    from .test_corpus import cli, cli_background

    whole = tmp_path / "whole"
    assert cli(*train_args(labelled, whole)).returncode == 0
    resumed = tmp_path / "resumed"
    # SIGTERM: the run stops after its step, with a checkpoint, and says how to go on
    process = cli_background(*train_args(labelled, resumed))
    while process.poll() is None and not (resumed / "checkpoints" / "step-00000005").exists():
        time.sleep(0.01)
    assert process.poll() is None, "the run finished before it could be stopped; make it longer"
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 3
    stopped = sorted(p.name for p in (resumed / "checkpoints").iterdir())[-1]
    # SIGKILL: nothing is written at all; the newest checkpoint is resumed
    process = cli_background(*train_args(labelled, resumed))
    while process.poll() is None and not (resumed / "checkpoints" / "step-00000020").exists():
        time.sleep(0.01)
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait()
    again = cli(*train_args(labelled, resumed)[:-1])
    assert again.returncode == 0, again.stderr
    assert "resumed from step" in again.stderr + again.stdout and stopped != "step-00000040"
    a, b = (load_file(str(d / "final" / "model.safetensors")) for d in (whole, resumed))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(b[name], a[name]), name  # bit for bit
    def training_rows(run):  # (step, loss): one per step, none twice after a resume
        rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()[1:]]
        return [(r[0], float(r[2])) for r in rows if r[2]]

    assert [s for s, _ in training_rows(resumed)] == [str(i) for i in range(1, 41)]
    assert training_rows(resumed) == training_rows(whole)
    # the same command on a finished run does nothing more; another run into it is refused
    other = cli(*train_args(labelled, resumed, steps=50))
    assert other.returncode == 2 and "different run" in other.stderr


def test_the_trained_model_is_an_encoder_for_the_next_iteration(labelled, tmp_path):
    from speechtok.encoders import build_encoder

    from .test_corpus import cli

    assert cli(*train_args(labelled, tmp_path / "run", steps=3, every=3)).returncode == 0
    import soundfile as sf
    from transformers import HubertModel

    encoder = build_encoder(str(tmp_path / "run" / "final"), [2])
    features = encoder.encode(str(labelled / "audio" / "valid0.wav"))["L2"]
    wave, _ = sf.read(labelled / "audio" / "valid0.wav", dtype="float32")
    model = HubertModel.from_pretrained(tmp_path / "run" / "final").eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(wave)[None], output_hidden_states=True).hidden_states[2][0]
    assert features.shape == (len(expected), 96)
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4)


def test_torchrun_processes_share_the_batches_and_resume_together(labelled, tmp_path):
    # the DDP path on CPU (gloo): two processes, each its half of the batches, rank 0 writes; a
    # SIGTERM to torchrun reaches both, they stop at the same step with every process's random
    # states checkpointed, and the resumed run ends bit for bit as the uninterrupted one
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    def torchrun(out):
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
                "speechtok.cli", *map(str, train_args(labelled, out, steps=30, every=3))]

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    done = subprocess.run(torchrun(whole), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split(",") for line in (whole / "metrics.csv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows if r[2]] == [str(i) for i in range(1, 31)]
    assert '"world_size": 2' in (whole / "run.json").read_text()
    agent = subprocess.Popen(torchrun(resumed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while agent.poll() is None and not (resumed / "checkpoints" / "step-00000006").exists():
        time.sleep(0.01)
    assert agent.poll() is None, "the run finished before it could be stopped; make it longer"
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=600) != 0
    stopped = [p.name for p in (resumed / "checkpoints").iterdir()]
    assert all((resumed / "checkpoints" / n / f"rank-{r}.pt").exists() for n in stopped for r in (0, 1))
    done = subprocess.run(torchrun(resumed), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = (load_file(str(d / "final" / "model.safetensors")) for d in (whole, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_labels_of_the_wrong_rate_and_half_written_logs(labelled, tmp_path):
    from speechtok.errors import InputError
    from speechtok.train import read_split
    from speechtok.train.trainer import _truncate_metrics

    with pytest.raises(InputError, match="wrong --label-rate"):
        read_split(labelled / "train.tsv", labelled / "labels", label_rate=50.0)  # they are 100 Hz
    log = tmp_path / "metrics.csv"
    log.write_text("step,epoch,loss,masked_accuracy,lr,audio_seconds,seconds,valid_loss,valid_masked_accuracy\r\n"
                   "1,0,4.5,0.1,0.0,9.0,0.1,,\r\n2,0,4.4,0.1,0.1,9.0,0.1,,\r\n3,0,4.3,0.1,0.1,9.0,0.1,,\r\n1")
    _truncate_metrics(log, 2)  # a checkpoint at step 2; step 3 and the cut-off line "1" are dropped
    assert [line.split(",")[0] for line in log.read_text().splitlines()[1:]] == ["1", "2"]
