"""Teacher quality (fairseq's measure_teacher_quality definitions), unit statistics, HuBERT labels."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from speechtok.eval.alignments import read_alignments
from speechtok.eval.metrics import JointCounts, resample_units, stream_stats, teacher_quality

SR = 16000


def cli(*args):
    return subprocess.run([sys.executable, "-m", "speechtok.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def independent_quality(phones, units) -> dict:
    """From the joint count matrix, by other formulas: MI = H(y) + H(z) - H(y, z), purities by loops."""
    ys, zs = sorted(set(phones)), sorted(set(units))
    counts = np.zeros((len(ys), len(zs)))
    for y, z in zip(phones, units):
        counts[ys.index(y), zs.index(z)] += 1
    p = counts / counts.sum()

    def h(q):
        q = q[q > 0]
        return -np.sum(q * np.log(q))

    h_y, h_z, h_yz = h(p.sum(1)), h(p.sum(0)), h(p.ravel())
    phone_purity = sum(max(p[i, j] for i in range(len(ys))) for j in range(len(zs)))
    cluster_purity = sum(max(p[i, j] for j in range(len(zs))) for i in range(len(ys)))
    return {"pnmi": (h_y + h_z - h_yz) / h_y, "phone_purity": phone_purity, "cluster_purity": cluster_purity,
            "phone_entropy": h_y, "unit_entropy": h_z}


def test_pnmi_and_purities_on_hand_made_examples():
    rng = np.random.default_rng(0)
    phones = [str(c) for c in rng.choice(list("aeiou"), 5000, p=[0.4, 0.3, 0.15, 0.1, 0.05])]
    # identical up to naming: every unit is one phone and back
    same = [{"a": 7, "e": 3, "i": 11, "o": 0, "u": 5}[p] for p in phones]
    q = teacher_quality(JointCounts.collect([(phones, same)]))
    assert q.pnmi == pytest.approx(1.0, abs=1e-12)
    assert q.phone_purity == pytest.approx(1.0) and q.cluster_purity == pytest.approx(1.0)
    # independent: ~0
    other = rng.integers(0, 20, len(phones)).tolist()
    q = teacher_quality(JointCounts.collect([(phones, other)]))
    assert q.pnmi < 0.01
    # a partial relation, split over two utterances, against the independent computation
    noisy = [u if rng.random() < 0.6 else int(rng.integers(0, 12)) for u in same]
    q = teacher_quality(JointCounts.collect([(phones[:2000], noisy[:2000]), (phones[2000:], noisy[2000:])]))
    expected = independent_quality(phones, noisy)
    for key, value in expected.items():
        assert getattr(q, key) == pytest.approx(value, rel=1e-9), key
    assert 0.2 < q.pnmi < 0.9
    assert q.frames == 5000 and q.utterances == 2


def test_utterances_are_cut_to_the_shorter_and_units_upsampled_like_fairseq():
    units = np.array([4, 4, 9, 2, 2, 2, 7])
    assert resample_units(units, 50, 100).tolist() == np.repeat(units, 2).tolist()  # fairseq --upsample 2
    assert resample_units(units, 100, 100).tolist() == units.tolist()
    assert resample_units(np.arange(10), 100, 50).tolist() == [0, 2, 4, 6, 8]
    joint = JointCounts.collect([(["a", "b", "b"], [1, 2, 2, 2, 5])])
    assert joint.counts.sum() == 3 and joint.frame_difference == 2


def test_stream_stats_by_definition():
    seqs = [np.array([0, 0, 1, 3]), np.array([3, 3, 3, 0])]
    s = stream_stats("L9", seqs, k=8, seconds=0.16)
    p = np.array([3, 1, 0, 4]) / 8
    entropy = -sum(x * np.log2(x) for x in p if x > 0)
    assert s.used == 3 and s.usage == 3 / 8 and s.tokens == 8
    assert s.entropy_bits == pytest.approx(entropy) and s.perplexity == pytest.approx(2 ** entropy)
    assert s.tokens_per_second == pytest.approx(50) and s.nominal_bitrate == pytest.approx(150)
    assert s.entropy_bitrate == pytest.approx(50 * entropy)


# --- generated speech with known phone timing ----------------------------------------------------

@pytest.fixture(scope="module")
def timed_corpus(tmp_path_factory):
    """24 utterances of phone-like segments with known boundaries, a fairseq .tsv and a phone tsv."""
    root = tmp_path_factory.mktemp("timed")
    from speechtok.example_audio import frame_phones, timed_utterance

    rng = np.random.default_rng(1)
    tsv, phones_lines, segments = [str(root)], [], {}
    for u in range(24):
        wave, spans = timed_utterance(rng, count=int(rng.integers(8, 16)), sample_rate=SR)
        sf.write(root / f"u{u:02d}.wav", wave, SR)
        tsv.append(f"u{u:02d}.wav\t{len(wave)}")
        phones_lines.append(f"u{u:02d}\t" + ",".join(frame_phones(spans, len(wave) / SR)))
        segments[f"u{u:02d}"] = spans
    (root / "train.tsv").write_text("\n".join(tsv) + "\n")
    (root / "phones.tsv").write_text("\n".join(phones_lines) + "\n")
    return root, segments


def test_mfcc_units_beat_random_labels_of_the_same_distribution(timed_corpus, tmp_path):
    root, _ = timed_corpus
    tok, units = tmp_path / "tok", tmp_path / "units"
    assert cli("fit-kmeans", root / "train.tsv", "--encoder", "mfcc", "-k", "100", "-o", tok, "-q").returncode == 0
    assert cli("tokenize", root / "train.tsv", "-t", tok, "-o", units, "-q", "--dedup").returncode == 0
    result = cli("eval", "purity", units, "--alignments", root / "phones.tsv", "--json")
    assert result.returncode == 0, result.stderr
    real = json.loads(result.stdout)

    # the same units shuffled over all frames: same marginal distribution, no relation to phones
    from speechtok.corpus.manifest import read_rows

    table, _ = read_rows(units)
    seqs = [np.repeat(c, d) for c, d in zip(table.column("mfcc").to_pylist(), table.column("mfcc_durations").to_pylist())]
    flat = np.random.default_rng(0).permutation(np.concatenate(seqs))
    shuffled = np.split(flat, np.cumsum([len(s) for s in seqs])[:-1])
    phones = read_alignments(root / "phones.tsv")
    ids = table.column("id").to_pylist()
    random = teacher_quality(JointCounts.collect([(phones[i], s) for i, s in zip(ids, shuffled)]))
    assert real["frames"] == random.frames and real["units"] > 50
    assert real["pnmi"] > 0.4 and random.pnmi < 0.1 and real["pnmi"] > 5 * random.pnmi
    assert real["phone_purity"] > random.phone_purity + 0.2


def test_textgrid_alignments_give_the_same_frames(timed_corpus, tmp_path):
    from praatio import textgrid

    root, segments = timed_corpus
    grids = tmp_path / "grids"
    grids.mkdir()
    for uid, spans in segments.items():  # MFA style: silence as empty intervals, stress digits on vowels
        end = spans[-1][1]
        entries = [(a, b, "" if name == "sil" else name.upper() + ("1" if name in ("aa", "iy") else ""))
                   for a, b, name in spans]
        tg = textgrid.Textgrid()
        tg.addTier(textgrid.IntervalTier("words", [(0, end, "word")], 0, end))
        tg.addTier(textgrid.IntervalTier("phones", entries, 0, end))
        tg.save(str(grids / f"{uid}.TextGrid"), format="long_textgrid", includeBlankSpaces=True)
    from_grids = read_alignments(grids)
    from_tsv = read_alignments(root / "phones.tsv")
    assert set(from_grids) == set(from_tsv)
    for uid, labels in from_tsv.items():
        assert [p.lower() for p in from_grids[uid]] == labels


def test_hubert_labels_one_kmeans_lengths_checked(timed_corpus, tmp_path):
    root, _ = timed_corpus
    lines = (root / "train.tsv").read_text().splitlines()
    (tmp_path / "train.tsv").write_text("\n".join(lines[:17]) + "\n")
    bad = lines[18].split("\t")
    planted = [lines[0], lines[17], f"{bad[0]}\t{int(bad[1]) + 8000}", *lines[19:]]  # +0.5 s in the manifest
    (tmp_path / "valid.tsv").write_text("\n".join(planted) + "\n")
    out = tmp_path / "labels"
    result = cli("hubert-labels", "--train", tmp_path / "train.tsv", "--valid", tmp_path / "valid.tsv",
                 "--encoder", "mfcc", "-k", "20", "-o", out, "-q")
    assert result.returncode == 1, result.stderr  # the planted mismatch
    planted_id = bad[0][:-4]
    assert planted_id in result.stderr and "1 differ" in result.stderr and "label_rate=100" in result.stderr
    report = json.loads((out / "labels.json").read_text())
    assert report["label_rate"] == 100
    valid = [c for c in report["checks"] if c["split"] == "valid"][0]
    assert [m["id"] for m in valid["mismatches"]] == [planted_id]
    assert [c["mismatches"] for c in report["checks"] if c["split"] == "train"] == [[]]
    # fairseq files: a line per utterance, K lines of dict; valid labelled with the TRAIN k-means
    assert (out / "dict.km.txt").read_text().splitlines() == [f"{i} 1" for i in range(20)]
    import speechtok

    tok = speechtok.load(out / "tokenizer")
    valid_lines = (out / "valid.km").read_text().splitlines()
    assert len(valid_lines) == len(planted) - 1
    first = tok.encode(root / lines[17].split("\t")[0]).codes[:, 0].tolist()
    assert valid_lines[0].split() == [str(c) for c in first]
    # the standalone check finds the same; a fixed manifest passes; a cut label line is caught
    check = cli("eval", "labels", tmp_path / "valid.tsv", out / "valid.km", "--label-rate", "100")
    assert check.returncode == 1 and planted_id in check.stderr
    (tmp_path / "fixed.tsv").write_text("\n".join([lines[0], *lines[17:]]) + "\n")
    assert cli("eval", "labels", tmp_path / "fixed.tsv", out / "valid.km", "--label-rate", "100").returncode == 0
    cut = valid_lines.copy()
    cut[2] = " ".join(cut[2].split()[:-15])
    (tmp_path / "cut.km").write_text("\n".join(cut) + "\n")
    check = cli("eval", "labels", tmp_path / "fixed.tsv", tmp_path / "cut.km", "--label-rate", "100")
    assert check.returncode == 1 and lines[19].split("\t")[0][:-4] in check.stderr
    # a re-run keeps the k-means (and the finished shards); other train data is refused
    again = cli("hubert-labels", "--train", tmp_path / "train.tsv", "--valid", tmp_path / "valid.tsv",
                "--encoder", "mfcc", "-k", "20", "-o", out)
    assert again.returncode == 1 and "kept from an earlier run" in again.stderr
    assert (out / "valid.km").read_text().splitlines() == valid_lines
    other = cli("hubert-labels", "--train", tmp_path / "fixed.tsv", "--valid", tmp_path / "valid.tsv",
                "--encoder", "mfcc", "-k", "20", "-o", out)
    assert other.returncode == 2 and "fitted differently" in other.stderr


def test_eval_stats_cli(timed_corpus, tmp_path):
    root, _ = timed_corpus
    tok, units = tmp_path / "tok", tmp_path / "units"
    assert cli("fit-kmeans", root / "train.tsv", "--encoder", "mfcc", "-k", "16", "-o", tok, "-q").returncode == 0
    assert cli("tokenize", root / "train.tsv", "-t", tok, "-o", units, "-q").returncode == 0
    result = cli("eval", "stats", units, "--json")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout.splitlines()[0])
    from speechtok.corpus.manifest import read_rows

    table, _ = read_rows(units)
    codes = np.concatenate(table.column("mfcc").to_pylist())
    assert row["k"] == 16 and row["tokens"] == len(codes) and row["used"] == len(np.unique(codes))
    seconds = sum(table.column("num_samples").to_pylist()) / SR
    assert row["tokens_per_second"] == pytest.approx(len(codes) / seconds)
    assert 97 < row["tokens_per_second"] < 100  # MFCC: 1 + (N - 400) // 160 frames
