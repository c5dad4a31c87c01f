"""The tokenized-corpus data model: manifests, TokenizedCorpus and the Units <-> row conversion."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speechtok import KMeans, MFCCEncoder, Tokenizer, Units
from speechtok.corpus import TokenizedCorpus, collect
from speechtok.corpus.manifest import CorpusManifest
from speechtok.corpus.tokenize import tokenize_corpus
from speechtok.errors import InputError


def test_units_row_round_trip():
    rng = np.random.default_rng(0)
    codes = np.repeat(rng.integers(0, 9, (40, 2)), rng.integers(1, 4, 40), axis=0)
    units = Units(codes, ("L7", "L23"), 50.0, (9, 9), num_samples=len(codes) * 320, sample_rate=16000)
    meta = {"frame_rate": 50.0, "vocab_sizes": (9,), "sample_rate": 16000}
    row = {**units.to_row(), "num_samples": units.num_samples}
    assert Units.from_row(row, ("L7", "L23"), 50.0, (9, 9), 16000) == units
    deduped = units.to_row(dedup=True)
    for stream in units.streams:  # each stream deduplicated on its own, as SpeechBrain does
        back = Units.from_row(deduped, (stream,), **meta)
        assert back == units.select(stream).dedup()
        assert np.array_equal(np.repeat(back.codes[:, 0], back.durations), units.stream(stream))
    with pytest.raises(ValueError, match="deduplicated on their own"):
        Units.from_row(deduped, ("L7", "L23"), 50.0, (9, 9))


def test_manifest_dict_round_trip_keeps_unknown_keys(tmp_path):
    data = {"type": "corpus-manifest", "speechtok_version": "0", "command": ["speechtok", "tokenize"],
            "job": {"command": "tokenize", "nshard": 1}, "rank": 0, "rows": 2, "errors": 0, "schema": {},
            "shards": [{"file": "data/a.parquet", "rows": 2, "errors": 0, "first_index": 0, "stop_index": 2}],
            "streams": ["mfcc"], "vocab_sizes": [8], "future_key": 1}
    manifest = CorpusManifest.from_dict(data)
    assert manifest.kind == "tokenize" and manifest.shards[0].rows == 2
    assert manifest.to_dict() == {**CorpusManifest.from_dict(manifest.to_dict()).to_dict()}
    assert manifest.to_dict()["future_key"] == 1


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory, speech_files):
    encoder = MFCCEncoder()
    frames = torch.cat([f["mfcc"] for f in encoder.encode_batch(speech_files)])
    tok = Tokenizer(encoder, {"mfcc": KMeans.fit(frames, 10, seed=0)})
    root = tmp_path_factory.mktemp("corpus")
    out = {}
    for dedup in (False, True):
        out[dedup] = root / f"units-{dedup}"
        tokenize_corpus(collect(speech_files), tok, out[dedup], dedup=dedup, shard_size=3)
    return tok, out


def test_tokenized_corpus_gives_what_the_tokenizer_gives(tokenized, speech_files):
    tok, out = tokenized
    expected = tok.encode_batch(speech_files)
    corpus = TokenizedCorpus.open(out[False])
    assert len(corpus) == len(speech_files) and len(corpus.shard_files) > 1
    assert corpus.streams == ["mfcc"] and corpus.vocab_sizes == [10] and corpus.frame_rate == 100.0
    assert [u for _, u in corpus.iter_units()] == expected  # input order, equal codes and metadata
    sequences = corpus.sequences("mfcc")
    assert all(np.array_equal(s, u.stream("mfcc")) for s, u in zip(sequences, expected))

    deduped = TokenizedCorpus.open(out[True])
    assert [u for _, u in deduped.iter_units()] == [u.dedup() for u in expected]
    expanded = deduped.sequences("mfcc", expand=True)
    assert all(np.array_equal(s, u.stream("mfcc")) for s, u in zip(expanded, expected))


def test_an_unfinished_or_foreign_directory_is_refused(tokenized, tmp_path):
    _, out = tokenized
    with pytest.raises(InputError, match="no manifest.json"):
        TokenizedCorpus.open(tmp_path)
    manifest = json.loads((out[False] / "manifest.json").read_text())
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "manifest-0-of-2.json").write_text(json.dumps({**manifest, "job": {**manifest["job"], "nshard": 2}}))
    with pytest.raises(InputError, match=r"ranks \[1\] of 2 have not finished"):
        TokenizedCorpus.open(partial)
    with pytest.raises(InputError, match="no stream 'L9'"):
        TokenizedCorpus.open(out[False]).stream("L9")
