"""Unit HiFi-GAN vocoders: SpeechBrain-layout checkpoints written from a random network with the
published hyperparameters, loaded and compared with that network; column layout by layer;
windowed and batched decoding against whole, one-at-a-time decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechtok import Units
from speechtok.vocoders import UnitVocoder, VocoderError

from .speechbrain_hifigan import write_repo

LAYERS = (1, 3, 7, 12, 18, 23)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A repo with SpeechBrain's published sizes (1024-dim embeddings, 512 channels, K=1000 x 6)."""
    repo = tmp_path_factory.mktemp("sb") / "hifigan-wavlm-k1000-LibriTTS"
    net = write_repo(repo)
    return repo, net


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The same architecture with small widths, for the slower checks."""
    repo = tmp_path_factory.mktemp("sb_small") / "repo"
    write_repo(repo, vocab_size=6 * 50 + 1, embedding_dim=32, channels=32, seed=1)
    return UnitVocoder.from_speechbrain(repo)


def _units(layers, k, frames, seed=0):
    rng = np.random.default_rng(seed)
    return Units(codes=rng.integers(0, k, (frames, len(layers))), streams=[f"L{n}" for n in layers],
                 frame_rate=50, vocab_sizes=[k] * len(layers))


@pytest.mark.parametrize("parametrized", [False, True])
def test_speechbrain_checkpoint_loads_exactly_and_sounds_like_it(tmp_path, published, parametrized):
    repo, net = published if not parametrized else (tmp_path / "repo11", None)
    if parametrized:  # SpeechBrain 1.1 checkpoints: parametrizations.weight.original0/1
        net = write_repo(repo, parametrized=True, seed=3)
    keys = torch.load(repo / "generator.ckpt", weights_only=True)
    assert any(k.endswith("original0" if parametrized else "weight_g") for k in keys)
    voc = UnitVocoder.from_speechbrain(repo)  # raises on any missing or unexpected key
    assert voc.layers == LAYERS and voc.k == 1000 and voc.hop == 320 and voc.sample_rate == 16000
    units = _units(LAYERS, 1000, 37)
    audio = voc.decode(units)
    assert audio.shape == (37 * 320,) and audio.dtype == np.float32
    expected = net.inference(torch.from_numpy(units.vocoder_tokens(LAYERS))[None])[0, 0].numpy()
    np.testing.assert_allclose(audio, expected, atol=1e-5)


def test_streams_go_to_the_columns_of_their_layers(small):
    """Tokens of layers 7 and 23 only: columns 2 and 5 of the 6-layer vocoder, the others 0 -
    not columns 0 and 1, which SpeechBrain's DiscreteSSL.decode would use."""
    units = _units((7, 23), 50, 9, seed=2)
    ids = small.ids(units)
    assert ids.shape == (9, 6)
    np.testing.assert_array_equal(ids[:, 2], units.codes[:, 0] + 2 * 50 + 1)
    np.testing.assert_array_equal(ids[:, 5], units.codes[:, 1] + 5 * 50 + 1)
    assert (ids[:, [0, 1, 3, 4]] == 0).all()
    # and decoding uses exactly that input
    direct = small.decode_ids([ids])[0]
    np.testing.assert_array_equal(small.decode(units), direct)
    with pytest.raises(ValueError, match="layer 9"):
        small.ids(_units((9,), 50, 4))
    with pytest.raises(VocoderError, match="K=50"):
        small.ids(_units((7,), 1000, 4))


def test_windowed_decoding_equals_whole(small, tmp_path):
    units = _units(LAYERS, 50, 700, seed=4)  # 14 s
    whole = small.decode(units)
    windowed = UnitVocoder.from_speechbrain(small.source, window_seconds=0.5)
    assert windowed.window_frames == 25 and windowed.context == small.context
    audio = windowed.decode(units)
    assert audio.shape == whole.shape == (700 * 320,)
    np.testing.assert_allclose(audio, whole, rtol=0, atol=1e-6 * np.abs(whole).max())


def test_batches_and_durations(small):
    seqs = [_units(LAYERS, 50, n, seed=n) for n in (12, 40, 12, 7, 55)]
    small.batch_seconds = 0
    alone = [small.decode(u) for u in seqs]
    small.batch_seconds = 100
    together = small.decode_batch(seqs)
    for a, b in zip(alone, together):
        np.testing.assert_allclose(a, b, atol=1e-6)
    small.batch_seconds = 0
    # deduplicated units are expanded by their stored durations before decoding
    units = _units((7,), 50, 30, seed=9).select("L7")
    repeated = Units(codes=np.repeat(units.codes, 2, axis=0), streams=["L7"], frame_rate=50, vocab_sizes=[50])
    deduped = repeated.dedup()
    np.testing.assert_array_equal(small.decode(deduped), small.decode(repeated))


def test_import_speechbrain_brings_the_vocoder_and_round_trips(tmp_path, model_dir):
    """k-means of two layers (7, 23) from a six-layer repo: the tokenizer decodes through the repo's
    vocoder with the tokens in columns 2 and 5, as the reference network computes from ids placed
    by hand; `speechtok decode` writes the same audio for a tokenized corpus."""
    import joblib
    import soundfile as sf
    from sklearn.cluster import MiniBatchKMeans
    from typer.testing import CliRunner

    import speechtok
    from speechtok.cli import app

    from .conftest import SR

    repo = tmp_path / "hifigan-hubert-k50"
    net = write_repo(repo, vocab_size=6 * 50 + 1, embedding_dim=32, channels=32, seed=5)
    (repo / "kmeans").mkdir()
    rng = np.random.default_rng(0)
    for layer in LAYERS:
        km = MiniBatchKMeans(n_clusters=50, n_init=1, random_state=layer).fit(rng.standard_normal((500, 64)))
        joblib.dump(km, repo / "kmeans" / f"LibriSpeech_hubert_k50_L{layer}.pt")
    encoder = model_dir("hubert-group", layers=24)
    runner = CliRunner()
    result = runner.invoke(app, ["import", "speechbrain", str(repo), "--encoder", str(encoder), "--layers", "7,23",
                                 "-o", str(tmp_path / "tok")])
    assert result.exit_code == 0, result.output
    tok = speechtok.load(tmp_path / "tok")
    assert tok.streams == ("L7", "L23") and tok.has_decoder and tok.vocoder.layers == LAYERS
    wave = (0.1 * rng.standard_normal(SR * 2)).astype(np.float32)
    units = tok.encode(wave, SR)
    audio = tok.decode(units)
    ids = np.zeros((len(units), 6), dtype=np.int64)
    ids[:, 2] = units.stream("L7") + 2 * 50 + 1
    ids[:, 5] = units.stream("L23") + 5 * 50 + 1
    expected = net.inference(torch.from_numpy(ids)[None])[0, 0].numpy()
    assert audio.shape == (len(units) * 320,)
    np.testing.assert_allclose(audio, expected, atol=1e-5)

    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", wave, SR)
    result = runner.invoke(app, ["tokenize", str(tmp_path / "audio"), "-t", str(tmp_path / "tok"), "-o",
                                 str(tmp_path / "units"), "-q"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["decode", str(tmp_path / "units"), "-o", str(tmp_path / "wavs"), "-q"])
    assert result.exit_code == 0, result.output
    decoded, rate = sf.read(tmp_path / "wavs" / "a.wav", dtype="float32")
    assert rate == 16000
    np.testing.assert_allclose(decoded, audio, atol=1e-6)


def test_fairseq_codehifigan(tmp_path):
    """Raw units, durations from the predictor (dur_prediction), stored durations, and a speaker."""
    from .fairseq_codehifigan import write_checkpoint

    net = write_checkpoint(tmp_path / "gslm")
    voc = UnitVocoder.from_fairseq(tmp_path / "gslm" / "g_00100000")  # config.json beside it
    assert voc.layers is None and voc.k == 100 and voc.hop == 320
    rng = np.random.default_rng(1)
    units = Units(codes=rng.integers(0, 100, 23), streams=["L6"], frame_rate=50, vocab_sizes=[100])
    code = torch.from_numpy(units.codes[:, 0])[None]
    np.testing.assert_allclose(voc.decode(units), net(code)[0, 0].numpy(), atol=1e-5)
    deduped = units.dedup()
    bare = Units(codes=deduped.codes, streams=["L6"], frame_rate=50, vocab_sizes=[100])  # no durations
    expected = net(torch.from_numpy(bare.codes[:, 0])[None], dur_prediction=True)[0, 0].numpy()
    np.testing.assert_allclose(voc.decode(bare, predict_durations=True), expected, atol=1e-5)
    np.testing.assert_allclose(voc.decode(deduped), voc.decode(units), atol=1e-6)  # stored durations

    multi = write_checkpoint(tmp_path / "multi", multispkr=True, num_speakers=4, model_in_dim=32)
    voc = UnitVocoder.from_fairseq(tmp_path / "multi" / "g_00100000")
    expected = multi(code, spkr=torch.tensor([[2]]))[0, 0].numpy()
    np.testing.assert_allclose(voc.decode(units, speaker=2), expected, atol=1e-5)
    with pytest.raises(ValueError, match="speaker"):
        voc.decode(units)

    write_checkpoint(tmp_path / "f0", f0=True)
    with pytest.raises(ValueError, match="F0"):
        UnitVocoder.from_fairseq(tmp_path / "f0" / "g_00100000")


def test_speechbrain_preset_decodes_with_its_repos_vocoder_offline(tmp_path, model_dir):
    """`speechbrain-wavlm-k1000` fetches the vocoder of its repo (from the HF cache here) only
    when decoding; layer 7's tokens go to column 2 of the six."""
    import joblib
    from sklearn.cluster import MiniBatchKMeans

    from .test_tokenizer import lay_out_hub_repo, run_offline

    repo = tmp_path / "repo"
    write_repo(repo, vocab_size=6001, embedding_dim=32, channels=32, seed=8)
    rng = np.random.default_rng(0)
    km = MiniBatchKMeans(n_clusters=1000, n_init=1, max_iter=2, batch_size=2048, random_state=0)
    joblib.dump(km.fit(rng.standard_normal((3000, 64))), tmp_path / "km.pt")
    hub = tmp_path / "hub"
    model = model_dir("wavlm-layer-stable", layers=8)
    lay_out_hub_repo(hub, "microsoft/wavlm-large", {p.name: p for p in model.iterdir()})
    lay_out_hub_repo(hub, "speechbrain/hifigan-wavlm-k1000-LibriTTS", {
        "kmeans/LibriSpeech_wavlm_k1000_L7.pt": tmp_path / "km.pt",
        "hyperparams.yaml": repo / "hyperparams.yaml", "generator.ckpt": repo / "generator.ckpt"})
    code = ("import speechtok, numpy as np, json\n"
            "tok = speechtok.load('speechbrain-wavlm-k1000', layers=[7])\n"
            "assert tok.has_decoder and tok._vocoder is None  # not fetched until needed\n"
            "u = tok.encode(np.random.default_rng(1).standard_normal(16000).astype('float32') * 0.1, 16000)\n"
            "a = tok.decode(u)\n"
            "print(json.dumps({'codes': u.codes[:, 0].tolist(), 'audio': a[:2000].tolist(), 'n': len(a)}))\n")
    result = run_offline(code, hub, tmp_path / "st")
    assert result.returncode == 0, result.stderr
    out = __import__("json").loads(result.stdout.strip().splitlines()[-1])
    ids = np.zeros((len(out["codes"]), 6), dtype=np.int64)
    ids[:, 2] = np.asarray(out["codes"]) + 2 * 1000 + 1
    voc = UnitVocoder.from_speechbrain(repo)
    assert out["n"] == len(ids) * 320
    np.testing.assert_allclose(out["audio"], voc.decode_ids([ids])[0][:2000], atol=1e-6)


def test_import_kmeans_with_a_fairseq_vocoder(tmp_path, model_dir):
    """GSLM style: fairseq k-means (K=100) + CodeHiFiGAN -> one tokenizer that decodes."""
    import joblib
    from sklearn.cluster import MiniBatchKMeans
    from typer.testing import CliRunner

    import speechtok
    from speechtok.cli import app

    from .fairseq_codehifigan import write_checkpoint

    write_checkpoint(tmp_path / "voc")
    rng = np.random.default_rng(0)
    joblib.dump(MiniBatchKMeans(n_clusters=100, n_init=1, random_state=0).fit(rng.standard_normal((800, 64))),
                tmp_path / "km.bin")
    runner = CliRunner()
    args = ["import", "kmeans", str(tmp_path / "km.bin"), "--encoder", str(model_dir("hubert-group")),
            "--layer", "2", "--vocoder", str(tmp_path / "voc" / "g_00100000"), "-o", str(tmp_path / "tok")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    tok = speechtok.load(tmp_path / "tok")
    units = tok.encode((0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    voc = UnitVocoder.from_fairseq(tmp_path / "voc" / "g_00100000")
    np.testing.assert_allclose(tok.decode(units), voc.decode(units), atol=1e-6)
    joblib.dump(MiniBatchKMeans(n_clusters=50, n_init=1, random_state=0).fit(rng.standard_normal((800, 64))),
                tmp_path / "km50.bin")
    args[2], args[-1] = str(tmp_path / "km50.bin"), str(tmp_path / "tok50")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "takes 100 units" in result.output
