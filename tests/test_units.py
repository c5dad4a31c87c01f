"""Units: dedup with durations, offset views, text forms, embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from speechtok import Units
from speechtok.units import parse_text


def units(codes, streams=("L7",), k=1000, **kw):
    return Units(np.asarray(codes), streams, 50.0, (k,) * len(streams), **kw)


def test_dedup_gives_run_lengths():
    u = units([5, 5, 5, 2, 2, 9, 5, 5]).dedup()
    assert u.stream("L7").tolist() == [5, 2, 9, 5]
    assert u.durations.tolist() == [3, 2, 1, 2]
    # expanding by durations gives the original back
    assert np.repeat(u.stream("L7"), u.durations).tolist() == [5, 5, 5, 2, 2, 9, 5, 5]
    assert u.duration_seconds == pytest.approx(8 / 50)
    # deduplicating again changes nothing, and keeps durations summed
    assert u.dedup() == u


def test_dedup_multi_stream_needs_all_streams_to_repeat():
    u = units([[1, 4], [1, 4], [1, 5], [2, 5]], streams=("L7", "L23")).dedup()
    assert u.codes.tolist() == [[1, 4], [1, 5], [2, 5]]
    assert u.durations.tolist() == [2, 1, 1]


def test_speechbrain_offsets():
    """SpeechBrain DiscreteSSLTokenizer: token + layer_number * K + 1."""
    u = units([[0, 999], [3, 4]], streams=("L7", "L23"))
    assert u.speechbrain_tokens().tolist() == [[0 + 7000 + 1, 999 + 23000 + 1], [3 + 7001, 4 + 23001]]


def test_vocoder_offsets_put_each_layer_in_its_own_column():
    """Layers 7 and 23 of a 6-layer vocoder [1,3,7,12,18,23]: columns 2 and 5, token + i*K + 1;
    the others hold 0 (the dropped-layer id) - not positions 0 and 1 as SpeechBrain's decode does."""
    u = units([[10, 20], [11, 21]], streams=("L7", "L23"))
    out = u.vocoder_tokens([1, 3, 7, 12, 18, 23])
    assert out.tolist() == [[0, 0, 10 + 2000 + 1, 0, 0, 20 + 5000 + 1], [0, 0, 2012, 0, 0, 5022]]
    with pytest.raises(ValueError, match="not one of"):
        units([[1]], streams=("L9",)).vocoder_tokens([1, 3, 7])


@pytest.mark.parametrize("style, text", [
    ("fairseq", "12 7 7 93"), ("speechgpt", "<12><7><7><93>"), ("spiritlm", "[Hu12][Hu7][Hu7][Hu93]")])
def test_text_forms_roundtrip(style, text):
    u = units([12, 7, 7, 93])
    assert u.to_text(style) == text
    assert parse_text(text, style).tolist() == [12, 7, 7, 93]


def test_text_needs_a_stream_name_when_several():
    u = units([[1, 2]], streams=("L7", "L23"))
    with pytest.raises(ValueError, match="name one"):
        u.to_text()
    assert u.to_text(stream="L23") == "2"
    assert u.select("L23").streams == ("L23",)


def test_embeddings_are_centroids_of_codes():
    rng = np.random.default_rng(0)
    books = (rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))
    u = Units(np.array([[0, 3], [2, 1]]), ("L1", "L3"), 50.0, (4, 4), codebooks=books)
    emb = u.embeddings()
    assert emb.shape == (2, 2, 3)
    np.testing.assert_array_equal(emb[1, 0], books[0][2])
    np.testing.assert_array_equal(emb[0, 1], books[1][3])
    with pytest.raises(ValueError, match="no codebooks"):
        units([1]).embeddings()


def test_shape_checks():
    with pytest.raises(ValueError):
        Units(np.zeros((3, 2)), ("L1",), 50.0, (10,))
    with pytest.raises(KeyError, match="no stream"):
        units([1]).stream("L9")
