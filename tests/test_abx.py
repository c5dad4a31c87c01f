"""ABX (ZeroSpeech's library) on inputs speechtok builds: a hand-made case with a known answer,
the .item format both ways, and generated speech where MFCC features must beat shuffled frames,
through `speechtok eval abx` on `extract` and `tokenize` output (`phone_speech`: conftest)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from speechtok.cli import app
from speechtok.eval.abx import Item, abx_error_rates, build_items, phone_segments, read_item_file, write_item_file

if importlib.util.find_spec("zrc_abx2") is None:  # imported by speechtok.eval.abx itself (it needs torchaudio's place)
    pytest.skip("pip install --no-deps zerospeech-libriabx2 (.ci/run does)", allow_module_level=True)

PHONES = ["a", "e", "i", "o", "u", "m", "s"]


def test_items_are_triphones_without_silence_and_the_format_reads_back(tmp_path):
    frames = ["sil"] * 3 + ["a"] * 4 + ["m"] * 2 + ["i"] * 5 + ["sil"] * 2 + ["s"] * 3
    assert phone_segments(frames, 100.0) == [(0.0, 0.03, "sil"), (0.03, 0.07, "a"), (0.07, 0.09, "m"),
                                             (0.09, 0.14, "i"), (0.14, 0.16, "sil"), (0.16, 0.19, "s")]
    items = build_items({"spk1-7": frames}, {"spk1-7": "spk1"}, 100.0, {"spk1-7": "u0"})
    # a, m, i, s without silence: m (a_i) and i (m_s) have a phone on each side
    assert items == [Item("u0", 0.07, 0.09, "m", "a", "i", "spk1"), Item("u0", 0.09, 0.14, "i", "m", "s", "spk1")]
    path = write_item_file(items, tmp_path / "x.item")
    assert path.read_text().splitlines()[0] == "#file onset offset #phone prev-phone next-phone speaker"
    assert read_item_file(path) == items


def hand_made(root, rng, same_for_phone: bool):
    """20 utterances of 7 'phones' (runs of 4-8 frames), 4 speakers; features: one fixed vector
    per phone, or noise."""
    root.mkdir()
    alignments, speakers = {}, {}
    vectors = {p: rng.standard_normal(8) for p in PHONES}
    for u in range(20):
        frames = [p for _ in range(30) for p in [PHONES[rng.integers(len(PHONES))]] * int(rng.integers(4, 9))]
        alignments[f"u{u}"], speakers[f"u{u}"] = frames, f"spk{u % 4}"
        values = np.stack([vectors[p] for p in frames]) if same_for_phone else rng.standard_normal((len(frames), 8))
        np.save(root / f"u{u}.npy", values.astype(np.float32))
    write_item_file(build_items(alignments, speakers, 100.0), root.parent / f"{root.name}.item")
    return root


def test_identical_vectors_per_phone_score_zero_and_noise_scores_chance(tmp_path):
    rng = np.random.default_rng(0)
    perfect = abx_error_rates(hand_made(tmp_path / "same", rng, True), tmp_path / "same.item", 100.0)
    noise = abx_error_rates(hand_made(tmp_path / "noise", rng, False), tmp_path / "noise.item", 100.0)
    assert perfect == {"within": 0.0, "across": 0.0}
    assert 0.4 < noise["within"] < 0.6 and 0.4 < noise["across"] < 0.6


def test_mfcc_features_beat_shuffled_frames_and_units_are_scored_too(phone_speech, tmp_path):
    from speechtok.corpus.arrow import column_arrays
    from speechtok.corpus.manifest import TokenizedCorpus

    runner = CliRunner()
    assert runner.invoke(app, ["extract", str(phone_speech / "audio"), "-e", "mfcc", "-o", str(tmp_path / "mfcc"), "-q"]).exit_code == 0
    done = runner.invoke(app, ["eval", "abx", str(tmp_path / "mfcc"), "-a", str(phone_speech / "phones.tsv"), "-o",
                               str(tmp_path / "abx-mfcc"), "--json"])
    assert done.exit_code == 0, done.output
    mfcc = json.loads(done.output.strip().splitlines()[-1])
    assert mfcc["speakers"] == 4 and mfcc["utterances"] == 24 and mfcc["representation"] == "features"

    # the same frames shuffled within each utterance, scored on the same items
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    rng = np.random.default_rng(0)
    corpus = TokenizedCorpus.open(tmp_path / "mfcc", kinds=("extract",))
    names = {uid: f"u{i:07d}" for i, uid in enumerate(sorted(corpus.table(["id"]).column("id").to_pylist()))}
    for table in corpus.tables(["id", "mfcc"]):
        for uid, values in zip(table.column("id").to_pylist(), column_arrays(table.column("mfcc"))):
            np.save(shuffled / f"{names[uid]}.npy", rng.permutation(np.asarray(values)))
    chance = abx_error_rates(shuffled, tmp_path / "abx-mfcc" / "abx.item", 100.0)
    assert mfcc["within_speaker"] < 0.5 * chance["within"] and mfcc["across_speaker"] < 0.5 * chance["across"]
    assert 0.3 < chance["within"] < 0.7

    # units of an MFCC k-means tokenizer: through their centroids, and one-hot
    assert runner.invoke(app, ["fit-kmeans", str(phone_speech / "audio"), "-e", "mfcc", "-k", "30", "-o",
                               str(tmp_path / "tok"), "-q"]).exit_code == 0
    assert runner.invoke(app, ["tokenize", str(phone_speech / "audio"), "-t", str(tmp_path / "tok"), "-o",
                               str(tmp_path / "units"), "-q"]).exit_code == 0
    scores = {}
    for representation in ("centroids", "onehot"):
        done = runner.invoke(app, ["eval", "abx", str(tmp_path / "units"), "-a", str(phone_speech / "phones.tsv"), "-o",
                                   str(tmp_path / f"abx-{representation}"), "--representation", representation, "--json"])
        assert done.exit_code == 0, done.output
        scores[representation] = json.loads(done.output.strip().splitlines()[-1])
        assert scores[representation]["within_speaker"] < 0.5 * chance["within"]
    # the same items whatever is scored
    assert (tmp_path / "abx-centroids" / "abx.item").read_text() == (tmp_path / "abx-mfcc" / "abx.item").read_text()
