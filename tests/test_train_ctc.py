"""`speechtok train ctc`: the CTC loss against the forward algorithm written here from its
definition and against transformers' own CTC loss, the vocabulary, frozen steps, resume, and the
hand-off to `eval asr`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from speechtok.example_audio import phone_transcript, timed_utterance

SR = 16000


def tiny_hubert(**overrides):
    from transformers import HubertConfig

    fields = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, conv_dim=(16,) * 7,
                  num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, hidden_dropout=0.0, attention_dropout=0.0,
                  activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0)
    return HubertConfig(**{**fields, **overrides})


@pytest.fixture(scope="module")
def transcribed(tmp_path_factory):
    """12 train + 4 valid utterances of generated speech (2 s) with their phone transcripts
    (.ltr), and a random tiny HuBERT saved as a transformers directory to fine-tune."""
    from transformers import HubertModel, Wav2Vec2FeatureExtractor

    root = tmp_path_factory.mktemp("ctc-data")
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    for split, count in [("train", 12), ("valid", 4)]:
        lines, letters = [str(root / "audio")], []
        for i in range(count):
            wave, spans = timed_utterance(rng, seconds=2.0, sample_rate=SR)
            sf.write(root / "audio" / f"{split}{i}.wav", wave, SR)
            lines.append(f"{split}{i}.wav\t{len(wave)}")
            letters.append(" ".join(phone_transcript(spans)))
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
        (root / f"{split}.ltr").write_text("\n".join(letters) + "\n")
    torch.manual_seed(0)
    HubertModel(tiny_hubert(mask_time_prob=0.05)).save_pretrained(root / "pretrained")
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(root / "pretrained")
    return root


def ctc_forward_algorithm(log_probs: np.ndarray, target: list[int], blank: int) -> float:
    """-log p(target | frames): the sum over every alignment, by CTC's forward recursion over the
    target with blanks between and around its symbols (Graves et al. 2006)."""
    extended = [blank]
    for symbol in target:
        extended += [symbol, blank]
    alpha = np.full(len(extended), -np.inf)
    alpha[0] = log_probs[0, blank]
    alpha[1] = log_probs[0, extended[1]]
    for t in range(1, len(log_probs)):
        previous = alpha.copy()
        for s, symbol in enumerate(extended):
            ways = [previous[s]]
            if s >= 1:
                ways.append(previous[s - 1])
            if s >= 2 and symbol != blank and symbol != extended[s - 2]:
                ways.append(previous[s - 2])
            alpha[s] = np.logaddexp.reduce(ways) + log_probs[t, symbol]
    return -float(np.logaddexp(alpha[-1], alpha[-2]))


def conv_frames(samples: int) -> int:
    for kernel, stride in zip((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)):
        samples = (samples - kernel) // stride + 1
    return samples


def test_vocabulary_is_fairseqs_dictionary_order_with_the_blank_first(tmp_path):
    from speechtok.train.ctc import character_vocabulary, ctc_processor

    vocabulary = character_vocabulary([list("AB|A|"), list("CA|B|")])
    # specials, the word delimiter, then by count: A (3), B (2), C (1)
    assert list(vocabulary) == ["<pad>", "<s>", "</s>", "<unk>", "|", "A", "B", "C"]
    assert list(vocabulary.values()) == list(range(8))
    processor = ctc_processor(vocabulary, {"do_normalize": True})
    ids = [5, 5, 6, 4, 0, 7, 4]  # A A B | blank C |
    assert processor.batch_decode([ids])[0] == "AB C"  # repeats merged, blank dropped, | a space
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text()) == vocabulary


def test_ctc_loss_equals_the_forward_algorithm_and_transformers_loss(transcribed):
    from transformers import HubertForCTC

    from speechtok.train.ctc import CtcModel, CtcTask, character_vocabulary
    from speechtok.train.data import collate_padded, read_transcribed

    split = read_transcribed(transcribed / "train.tsv", transcribed / "train.ltr")
    vocabulary = character_vocabulary(split.letters)
    torch.manual_seed(0)
    # a layer-norm feature encoder takes an attention mask: padding changes nothing it computes
    config = tiny_hubert(feat_extract_norm="layer", do_stable_layer_norm=True, mask_time_prob=0.0, vocab_size=len(vocabulary),
                         pad_token_id=0, ctc_loss_reduction="sum", ctc_zero_infinity=True)
    ctc = HubertForCTC(config).eval()
    task = CtcTask(CtcModel(ctc), vocabulary, {"do_normalize": True, "return_attention_mask": True})
    indices = [0, 3, 5]
    cut = {0: 20000, 3: 32000, 5: 27000}  # different lengths, so the batch is padded
    batch = collate_padded(split, indices, task.encode, task.normalize)
    for row, i in enumerate(indices):  # shorten by hand: utterance i keeps its first cut[i] samples
        batch["input_values"][row, cut[i]:] = 0
        batch["sample_lengths"][row] = cut[i]
    with torch.no_grad():
        loss, _ = task.loss(task.module, batch, torch.device("cpu"), np.random.default_rng(0), step=0)

        expected, theirs = [], []
        for row, i in enumerate(indices):
            alone = batch["input_values"][row : row + 1, : cut[i]]
            target = [vocabulary[c] for c in split.letters[i]]
            logits = ctc(alone).logits[0]
            assert len(logits) == conv_frames(cut[i])
            log_probs = torch.log_softmax(logits.double(), -1).numpy()
            expected.append(ctc_forward_algorithm(log_probs, target, blank=0))
            theirs.append(float(ctc(alone, labels=torch.tensor([target])).loss))
    assert float(loss) == pytest.approx(np.mean(expected), rel=1e-4)
    assert float(loss) == pytest.approx(np.mean(theirs), rel=1e-4)


def ctc_args(root, out, steps=12, every=3, freeze=2, init=None):
    return ["train", "ctc", "--train", root / "train.tsv", "--valid", root / "valid.tsv", "--init",
            init or root / "pretrained", "-o", out, "--max-steps", steps, "--checkpoint-every", every, "--freeze-steps",
            freeze, "--batch-seconds", 6, "--lr", 1e-3, "--mask-time-prob", 0.3, "-q"]


def test_frozen_steps_train_only_the_output_layer(transcribed, tmp_path):
    from safetensors.torch import load_file

    from .test_corpus import cli

    done = cli(*ctc_args(transcribed, tmp_path / "run", steps=3, every=3, freeze=3))
    assert done.returncode == 0, done.stderr
    before = load_file(str(transcribed / "pretrained" / "model.safetensors"))
    after = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    encoder = {k.removeprefix("hubert."): v for k, v in after.items() if k.startswith("hubert.")}
    assert set(encoder) - {"masked_spec_embed"} == set(before) - {"masked_spec_embed"}
    for name in set(before) - {"masked_spec_embed"}:
        assert torch.equal(encoder[name], before[name]), name
    # the output layer did learn: it is not the one the same seed starts from
    from speechtok.train.ctc import character_vocabulary, ctc_model
    from speechtok.train.data import read_transcribed

    torch.manual_seed(0)
    letters = read_transcribed(transcribed / "train.tsv", transcribed / "train.ltr").letters
    start, _, _ = ctc_model(character_vocabulary(letters), init=str(transcribed / "pretrained"))
    assert torch.equal(start.ctc.hubert.encoder.layers[0].attention.k_proj.weight,
                       after["hubert.encoder.layers.0.attention.k_proj.weight"])
    assert not torch.equal(start.ctc.lm_head.weight, after["lm_head.weight"])
    rows = [line.split(",") for line in (tmp_path / "run" / "metrics.csv").read_text().splitlines()]
    frozen = rows[0].index("frozen")
    assert [r[frozen] for r in rows[1:] if r[2]] == ["1", "1", "1"]


def test_a_stopped_ctc_run_resumes_to_the_uninterrupted_one_and_eval_asr_reads_it(transcribed, tmp_path):
    import signal
    import time

    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from speechtok.cli import app

    from .test_corpus import cli, cli_background

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    done = cli(*ctc_args(transcribed, whole))
    assert done.returncode == 0, done.stderr
    process = cli_background(*ctc_args(transcribed, resumed))
    while process.poll() is None and not (resumed / "checkpoints" / "step-00000003").exists():
        time.sleep(0.01)
    assert process.poll() is None, "the run finished before it could be stopped; make it longer"
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 3
    again = cli(*ctc_args(transcribed, resumed)[:-1])
    assert again.returncode == 0, again.stderr
    assert "resumed from step" in again.stderr + again.stdout
    a, b = (load_file(str(d / "final" / "model.safetensors")) for d in (whole, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the steps after the frozen ones moved the encoder
    start = load_file(str(transcribed / "pretrained" / "model.safetensors"))
    assert not torch.equal(a["hubert.encoder.layers.0.attention.k_proj.weight"],
                           start["encoder.layers.0.attention.k_proj.weight"])

    # final/ is a CTC model with its processor: eval asr scores it as the run's last valid line did
    result = CliRunner().invoke(app, ["eval", "asr", str(whole / "final"), str(transcribed / "valid.tsv"),
                                      str(transcribed / "valid.ltr"), "--json"])
    assert result.exit_code == 0, result.output
    reported = json.loads(result.output[result.output.index('{"wer"'):].splitlines()[0])
    header, *rows = [line.split(",") for line in (whole / "metrics.csv").read_text().splitlines()]
    last = dict(zip(header, [r for r in rows if r[header.index("valid_cer")]][-1]))
    assert last["step"] == "12"
    assert reported["cer"] == pytest.approx(float(last["valid_cer"]), abs=1e-12)
    assert reported["wer"] == pytest.approx(float(last["valid_wer"]), abs=1e-12)


def test_a_training_run_is_taken_as_its_final_model(transcribed, tmp_path):
    import shutil

    from speechtok.encoders.ssl import load_ssl_model

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    shutil.copytree(transcribed / "pretrained", run / "final")
    model, extractor, source = load_ssl_model(str(run))
    assert source == str((run / "final").resolve()) and extractor["do_normalize"] is True
    with pytest.raises(Exception, match="no such|not found|No such"):
        load_ssl_model(str(tmp_path / "missing"))


def test_the_recipe_runs_both_iterations_and_ctc_from_one_config(transcribed, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    recipe = {
        "work": str(tmp_path / "work"), "train": str(transcribed / "train.tsv"), "valid": str(transcribed / "valid.tsv"),
        "iterations": [
            {"labels": {"encoder": "mfcc", "k": 20}, "train": {"config": "tiny", "max_steps": 2, "batch_seconds": 6,
                                                              "min_sample_seconds": 1.0}},
            {"labels": {"encoder": "previous", "layers": 2, "k": 10},
             "train": {"config": "tiny", "max_steps": 2, "batch_seconds": 6, "min_sample_seconds": 1.0}},
        ],
        "ctc": {"train": str(transcribed / "train.tsv"), "valid": str(transcribed / "valid.tsv"),
                "options": {"max_steps": 2, "batch_seconds": 6}},
        "test": {"tsv": str(transcribed / "valid.tsv"), "text": str(transcribed / "valid.ltr")},
    }
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    script = Path(__file__).parents[1] / "examples" / "hubert_recipe.py"
    done = subprocess.run([sys.executable, str(script), str(config)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    work = tmp_path / "work"
    assert json.loads((work / "labels-it1" / "labels.json").read_text())["label_rate"] == 100
    assert json.loads((work / "labels-it2" / "labels.json").read_text())["label_rate"] == 50
    second = json.loads((work / "hubert-it2" / "run.json").read_text())
    assert second["num_classes"] == 10 and second["labels"] == str(work / "labels-it2")
    labels = json.loads((work / "labels-it2" / "labels.json").read_text())
    assert str(work / "hubert-it1" / "final") in json.dumps(labels)  # iteration 2's targets: iteration 1's model
    assert json.loads((work / "ctc" / "run.json").read_text())["init"] == str(work / "hubert-it2" / "final")
    import re

    assert re.search(r"WER \d+\.\d+%  CER \d+\.\d+%  \(4 utterances\)", done.stdout + done.stderr)  # eval asr's line
    # re-run: every step is finished, nothing is redone
    model = work / "ctc" / "final" / "model.safetensors"
    written = model.stat().st_mtime_ns
    again = subprocess.run([sys.executable, str(script), str(config)], capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert model.stat().st_mtime_ns == written


def test_lengths_outside_the_limits_are_left_out_and_too_short_masks_refused(transcribed, tmp_path):
    from speechtok.errors import InputError
    from speechtok.train import TrainConfig
    from speechtok.train.ctc import CtcTask, character_vocabulary, ctc_model, train_ctc
    from speechtok.train.data import read_transcribed

    split = read_transcribed(transcribed / "valid.tsv", transcribed / "valid.ltr")
    wave, _ = sf.read(split.paths[0], dtype="float32")
    sf.write(tmp_path / "tiny.wav", wave[:300], SR)  # shorter than the convolutions' receptive field (400)
    split.paths[0], split.sizes = str(tmp_path / "tiny.wav"), np.array([300, *split.sizes[1:]])
    split.sizes[1] = 40 * SR  # as if 40 s long: over --max-sample-seconds
    vocabulary = character_vocabulary(split.letters)
    model, extractor, _ = ctc_model(vocabulary, init=str(transcribed / "pretrained"))
    config = TrainConfig(max_steps=1, min_sample_seconds=0.25, max_sample_seconds=30.0, batch_seconds=100)
    task = CtcTask(model, vocabulary, extractor)
    assert task.usable(split, config) == [2, 3]
    assert sorted(i for b in task.plan(split, config, np.random.default_rng(0)) for i in b) == [2, 3]
    scores = task.evaluate(split, config, torch.device("cpu"))  # the 300-sample file is not read at all
    assert all(np.isfinite(v) for v in scores.values())
    # a minimum whose utterances are shorter than a time mask is refused before the run starts
    with pytest.raises(InputError, match="time masks are 10 frames"):
        train_ctc(model, vocabulary, extractor, split, None, TrainConfig(max_steps=1, min_sample_seconds=0.1),
                  tmp_path / "run")
    assert not (tmp_path / "run").exists()
