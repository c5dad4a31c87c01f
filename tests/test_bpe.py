"""Unit BPE: a reversible unit -> character mapping, SentencePiece BPE, and its use in corpus jobs."""

from __future__ import annotations

import subprocess
import sys
import unicodedata

import numpy as np
import pytest

from speechtok.bpe import CODE_POINTS, MAX_UNITS, UnitBPE, text_to_units, units_to_text


def test_the_mapping_is_printable_and_reversible_for_every_unit():
    chars = [chr(c) for c in CODE_POINTS]
    assert len(chars) == MAX_UNITS == 65536 and len(set(chars)) == MAX_UNITS
    assert all(c.isprintable() and not c.isspace() for c in chars)
    assert not any(0xD800 <= c <= 0xDFFF for c in CODE_POINTS)  # no surrogates (SpeechBrain's chr(t + 97) hits them)
    assert all(unicodedata.normalize("NFKC", c) == c for c in chars)
    assert {unicodedata.category(c) for c in chars} == {"Lo"}
    every = np.arange(MAX_UNITS)
    text = units_to_text(every)
    assert len(text.encode("utf-8").decode("utf-8")) == MAX_UNITS  # valid UTF-8 throughout
    assert np.array_equal(text_to_units(text), every)
    with pytest.raises(ValueError):
        units_to_text([MAX_UNITS])


def _corpus(k: int, rng, n: int = 200):
    """Sequences built from recurring motifs over a few hundred units of 0..k-1 (BPE has merges to
    find), always including the first and last ids."""
    alphabet = rng.choice(k, size=min(k, 200), replace=False)
    alphabet[:2] = [0, k - 1]
    motifs = [rng.choice(alphabet, size=int(rng.integers(2, 6))) for _ in range(30)]
    return [np.concatenate([motifs[i] for i in rng.integers(0, 30, int(rng.integers(4, 30)))]) for _ in range(n)]


@pytest.mark.parametrize("k", [100, 1000, 65536])
def test_encode_then_decode_gives_the_units_back(k, tmp_path):
    rng = np.random.default_rng(k)
    everything = _corpus(k, rng, n=220)
    train, held_out = everything[:200], everything[200:]
    bpe = UnitBPE.train(train, k, vocab_size=min(k, 200) + 259 + 60, stream="L9")
    bpe = UnitBPE.load(bpe.save_pretrained(tmp_path / "bpe"))  # through its files
    unseen = rng.integers(0, k, 300)  # ids the BPE never saw: byte fallback keeps them
    for seq in [*train[:20], *held_out, unseen, np.array([k - 1]), np.array([], dtype=np.int64)]:
        ids = bpe.encode(seq)
        assert np.array_equal(bpe.decode(ids), seq)
        assert np.array_equal(np.concatenate(bpe.pieces(seq)) if len(seq) else seq, seq)
    # it did learn merges: sequences of the training distribution get shorter
    assert sum(len(bpe.encode(s)) for s in held_out) < 0.8 * sum(len(s) for s in held_out)
    assert sum(len(bpe.encode(s)) for s in train) < 0.8 * sum(len(s) for s in train)


def test_too_small_a_vocabulary_is_a_clear_error():
    train = _corpus(1000, np.random.default_rng(0))
    distinct = len(np.unique(np.concatenate(train)))
    with pytest.raises(ValueError, match=f"too small.*{distinct} distinct units.*at least {distinct + 259}"):
        UnitBPE.train(train, 1000, vocab_size=300)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "speechtok.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def test_bpe_train_and_tokenize_with_it(speech_files, tmp_path):
    from speechtok.corpus.manifest import read_rows

    tok, units, bpe_dir, with_bpe = tmp_path / "tok", tmp_path / "units", tmp_path / "bpe", tmp_path / "with_bpe"
    files = [str(f) for f in speech_files]
    assert cli("fit-kmeans", *files, "--encoder", "mfcc", "-k", "50", "-o", tok, "-q").returncode == 0
    assert cli("tokenize", *files, "-t", tok, "-o", units, "-q", "--dedup").returncode == 0
    trained = cli("bpe", "train", units, "--vocab-size", "400", "-o", bpe_dir)
    assert trained.returncode == 0, trained.stderr
    result = cli("tokenize", *files, "-t", tok, "-o", with_bpe, "-q", "--dedup", "--bpe", bpe_dir)
    assert result.returncode == 0, result.stderr
    table, manifests = read_rows(with_bpe)
    bpe = UnitBPE.load(bpe_dir)
    assert manifests[0]["bpe"]["sha256"] == bpe.config()["sha256"]
    codes, pieces = table.column("mfcc").to_pylist(), table.column("mfcc_bpe").to_pylist()
    assert sum(map(len, pieces)) < sum(map(len, codes))
    for c, p in zip(codes, pieces):
        assert bpe.decode(p).tolist() == c
    exported = cli("export", with_bpe, "--format", "jsonl", "-o", tmp_path / "jsonl")
    assert exported.returncode == 0, exported.stderr
    import json

    first = json.loads(next(iter((tmp_path / "jsonl").glob("*.jsonl"))).read_text().splitlines()[0])
    assert bpe.decode(first["mfcc_bpe"]).tolist() == first["mfcc"]
    # the command line both ways, on stdin lines
    lines = "\n".join(" ".join(map(str, c)) for c in codes[:3]) + "\n"
    encoded = subprocess.run([sys.executable, "-m", "speechtok.cli", "bpe", "encode", str(bpe_dir)], input=lines,
                             capture_output=True, text=True, timeout=300)
    assert encoded.returncode == 0, encoded.stderr
    assert [list(map(int, line.split())) for line in encoded.stdout.splitlines()] == pieces[:3]
    decoded = cli("bpe", "decode", bpe_dir, *pieces[0])
    assert decoded.stdout.split() == [str(c) for c in codes[0]]
    # a BPE of another K does not fit this tokenizer
    UnitBPE.train([np.arange(20)], 20, vocab_size=300, stream="mfcc").save_pretrained(tmp_path / "other")
    refused = cli("tokenize", *files, "-t", tok, "-o", tmp_path / "x", "-q", "--bpe", tmp_path / "other")
    assert refused.returncode == 2 and "K=20" in refused.stderr


def test_piece_ids_outside_the_vocabulary_are_refused(tmp_path):
    from typer.testing import CliRunner

    from speechtok.cli import app

    bpe = UnitBPE.train([np.arange(20), np.arange(20)[::-1]], 20, vocab_size=300, stream="mfcc")
    bpe.save_pretrained(tmp_path / "bpe")
    with pytest.raises(ValueError, match=r"0\.\.299"):
        bpe.decode([5, 300])
    result = CliRunner().invoke(app, ["bpe", "decode", str(tmp_path / "bpe"), "5", "99999"])
    assert result.exit_code == 2 and "99999" in result.output and "Traceback" not in result.output
