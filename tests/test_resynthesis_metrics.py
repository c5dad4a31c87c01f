"""Resynthesis metrics against independent truth: SI-SDR and MCD from their formulas, F0 on tones of
known pitch, PESQ / STOI as their packages give them; identity -> perfect, more noise -> worse."""

from __future__ import annotations

import math

import numpy as np
import pytest

from speechtok.eval import resynthesis as rs

SR = 16000


def test_si_sdr_is_the_ratio_of_the_target_to_an_orthogonal_error():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(8000)
    x -= x.mean()
    e = rng.standard_normal(8000)
    e -= e.mean()
    e -= (e @ x) / (x @ x) * x  # orthogonal to the reference, zero mean
    e *= 0.1
    for gain in (0.5, 1.0, 3.0):  # scale-invariant: any gain on the estimate scores the same
        expected = 10 * math.log10(np.sum((gain * x) ** 2) / np.sum(e**2))
        assert rs.si_sdr(x, gain * x + e) == pytest.approx(expected, abs=1e-9)
    assert rs.si_sdr(x, x) == math.inf and math.isnan(rs.si_sdr(np.zeros(10), x[:10]))


def test_mcd_is_the_formula_over_cepstra_from_the_dct_of_log_mel(speech_waves):
    import librosa
    from scipy.fft import dct

    x = speech_waves[0]
    rng = np.random.default_rng(1)
    y = (x + 0.02 * rng.standard_normal(len(x))).astype(np.float32)

    def cepstra(wave):  # log mel power -> orthonormal DCT-II, written here with scipy
        mel = librosa.feature.melspectrogram(y=wave, sr=SR, n_fft=1024, hop_length=256, n_mels=80)
        return dct(np.log(mel + 1e-10), type=2, norm="ortho", axis=0)[:13].T

    a, b = cepstra(x), cepstra(y)
    expected = np.mean([10 / np.log(10) * np.sqrt(2 * np.sum((p[1:] - q[1:]) ** 2)) for p, q in zip(a, b)])
    assert rs.mel_cepstral_distortion(x, y, SR) == pytest.approx(expected, rel=1e-5)
    assert rs.mel_cepstral_distortion(x, x, SR) == 0.0
    # a gain moves only c0, which MCD leaves out (speech has no all-zero bins to hit the floor)
    noisy = (x + 1e-3 * rng.standard_normal(len(x))).astype(np.float32)
    assert rs.mel_cepstral_distortion(noisy, 0.5 * noisy, SR) < 1e-3


def tone(f0, seconds=1.0, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(np.broadcast_to(f0, t.shape)) / sr
    return (0.5 * np.sin(phase) + 0.2 * np.sin(2 * phase)).astype(np.float32)


def test_f0_of_tones_of_known_pitch():
    a, b = tone(200.0), tone(220.0)
    m = rs.f0_metrics(a, b, SR)
    assert m["f0_rmse"] == pytest.approx(20.0, abs=2.0) and m["voicing_error"] < 0.05
    t = np.arange(SR) / SR
    gliding = 150 + 60 * t  # 150 -> 210 Hz
    same = rs.f0_metrics(tone(gliding), tone(gliding), SR)
    assert same["f0_rmse"] == 0.0 and same["f0_corr"] == pytest.approx(1.0) and same["voicing_error"] == 0.0
    shifted = rs.f0_metrics(tone(gliding), tone(gliding * 1.1), SR)  # 10% higher, same contour
    assert shifted["f0_corr"] > 0.95 and 10 < shifted["f0_rmse"] < 25
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    assert rs.f0_metrics(a, noise, SR)["voicing_error"] > 0.8  # voiced against unvoiced


def test_silent_short_and_constant_waves_give_nan_not_an_error(speech_waves):
    x = speech_waves[0]
    silent = np.zeros_like(x)
    for reference, estimate in [(x, silent), (silent, x), (x[:100], x[:100]), (x[:4000], x[:4000] * 0.5)]:
        m = rs.compare(reference, estimate, SR)
        assert set(m) == set(rs.METRICS)
    assert math.isnan(rs.si_sdr(x, silent)) and math.isnan(rs.si_sdr(x, np.full_like(x, 0.3)))
    assert math.isnan(rs.pesq_wb(x, silent, SR)) and math.isnan(rs.stoi(x[:100], x[:100], SR))
    assert math.isnan(rs.stoi(x[:4000], x[:4000], SR))  # 0.25 s: fewer than 30 frames of speech


def test_pesq_and_stoi_are_their_packages_and_every_metric_worsens_with_noise(speech_waves):
    from pesq import pesq
    from pystoi import stoi

    x = np.concatenate(speech_waves[:2])
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(len(x)).astype(np.float32)
    perfect = rs.compare(x, x, SR)
    assert perfect["pesq"] == pytest.approx(4.64, abs=0.01) and perfect["stoi"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["estoi"] == pytest.approx(1.0, abs=1e-6) and perfect["mcd"] == 0.0 and perfect["log_mel"] == 0.0
    scores = []
    for snr in (30, 20, 10, 0):
        y = (x + noise * np.sqrt(np.mean(x**2) / 10 ** (snr / 10))).astype(np.float32)
        m = rs.compare(x, y, SR)
        assert m["pesq"] == pytest.approx(pesq(SR, x, y, "wb"), abs=1e-6)
        assert m["stoi"] == pytest.approx(stoi(x, y, SR), abs=1e-9)
        assert m["estoi"] == pytest.approx(stoi(x, y, SR, extended=True), abs=1e-9)
        assert m["si_sdr"] == pytest.approx(snr, abs=0.3)  # white noise: SI-SDR is the SNR
        scores.append(m)
    for name in ("pesq", "stoi", "estoi", "si_sdr", "mcd", "log_mel"):
        values = [m[name] for m in scores]
        ordered = sorted(values, reverse=rs.HIGHER_IS_BETTER[name])
        assert values == ordered and len(set(values)) == 4, (name, values)


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory):
    from .test_codecs import _tiny

    directory = tmp_path_factory.mktemp("dac")
    _tiny("dac").eval().save_pretrained(directory)
    return directory


def test_eval_resynth_scores_a_codec_round_trip_of_a_sample(tiny_codec, speech_files, tmp_path):
    import json

    import soundfile as sf
    import soxr
    from typer.testing import CliRunner

    import speechtok
    from speechtok.cli import app

    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave")
    inputs = [*map(str, speech_files[:5]), str(bad)]
    out = tmp_path / "eval"
    run = CliRunner().invoke(app, ["eval", "resynth", *inputs, "-t", str(tiny_codec), "-n", "6", "-o", str(out), "-q"])
    assert run.exit_code == 1, run.output  # finished; one input failed, and is named
    assert "broken.wav" in run.output
    rows = [json.loads(line) for line in (out / "utterances.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and sum("error" in r for r in rows) == 1
    summary = json.loads((out / "eval.json").read_text())
    assert summary["sample"] == 6 and summary["failed"] == 1 and summary["metrics"]["pesq"]["count"] == 5

    # each utterance's numbers are what the public API's round trip gives, compared at 16 kHz
    tokenizer = speechtok.load(str(tiny_codec))
    row = next(r for r in rows if "error" not in r)
    original = speechtok.audio.load_audio(row["source"], 16000)
    units = tokenizer.encode(row["source"])
    decoded = tokenizer.decode(units)
    if tokenizer.decode_sample_rate != 16000:
        decoded = soxr.resample(decoded, tokenizer.decode_sample_rate, 16000)
    expected = rs.compare(original, decoded, SR)
    for name in rs.METRICS:  # JSON holds NaN as null
        value = float("nan") if row[name] is None else row[name]
        assert value == pytest.approx(expected[name], rel=1e-4, abs=1e-6, nan_ok=True), name
    assert row["tokens_per_second"] == pytest.approx(units.codes.size / (len(original) / SR))
    assert summary["bitrate"] == pytest.approx(tokenizer.bitrate)
    kept, _ = sf.read(out / "audio" / f"{row['n']}.orig.wav", dtype="float32")
    np.testing.assert_allclose(kept, original, atol=1e-6)
    assert summary["metrics"]["si_sdr"]["mean"] < 30  # a random codec does not give its input back

    # the same seed picks the same utterances; a tokenizer without a decoder is refused clearly
    again = CliRunner().invoke(app, ["eval", "resynth", *inputs, "-t", str(tiny_codec), "-n", "3", "-o",
                                     str(tmp_path / "again"), "-q"])
    picked = [json.loads(line)["id"] for line in (tmp_path / "again" / "utterances.jsonl").read_text().splitlines()]
    assert again.exit_code in (0, 1) and len(picked) == 3 and picked == sorted(picked, key=[r["id"] for r in rows].index)
    # a tokenizer without a decoder is refused, saying why
    from speechtok.encoders import MFCCEncoder
    from speechtok.quantizers import KMeans
    from speechtok.tokenizer import Tokenizer

    encoder = MFCCEncoder()
    frames = encoder.encode(original, sample_rate=SR)["mfcc"]
    Tokenizer(encoder, {"mfcc": KMeans.fit(frames, 4, seed=0)}).save_pretrained(tmp_path / "mfcc")
    no_decoder = CliRunner().invoke(app, ["eval", "resynth", *inputs[:2], "-t", str(tmp_path / "mfcc"), "-o",
                                          str(tmp_path / "x")])
    assert no_decoder.exit_code == 2 and "no decoder" in no_decoder.output


def test_the_sample_is_the_same_for_the_same_seed():
    from speechtok.corpus.resynth import sample

    picked = sample(1000, 20, seed=0)
    assert picked == sample(1000, 20, seed=0) and picked == sorted(set(picked)) and len(picked) == 20
    assert picked != sample(1000, 20, seed=1) and sample(5, 20, seed=0) == [0, 1, 2, 3, 4]


def test_speaker_similarity_and_dwer_from_named_models_and_a_missing_one(tiny_codec, speech_files, tmp_path,
                                                                        monkeypatch):
    import json

    import soundfile as sf
    import torch
    from transformers import (
        HubertConfig,
        HubertForCTC,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Processor,
        WavLMConfig,
        WavLMForXVector,
    )
    from typer.testing import CliRunner

    from speechtok.cli import app

    from .test_eval_asr import edit_distance

    torch.manual_seed(0)
    features = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True,
                                        return_attention_mask=False)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    speaker = WavLMForXVector(WavLMConfig(**small, tdnn_dim=(16, 16, 16, 16, 32), xvector_output_dim=8)).eval()
    speaker.save_pretrained(tmp_path / "sv")
    features.save_pretrained(tmp_path / "sv")
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate("abcdeh")}}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"), pad_token="<pad>", unk_token="<unk>",
                                     word_delimiter_token="|")
    asr = HubertForCTC(HubertConfig(**small, vocab_size=len(vocab), pad_token_id=0)).eval()
    with torch.no_grad():  # a random model that emits letters and word breaks, not only blanks
        asr.lm_head.bias.copy_(torch.tensor([-3.0, -9.0] + [0.0] * (len(vocab) - 2)))
    asr.save_pretrained(tmp_path / "asr")
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(tmp_path / "asr")
    from transformers import HubertForSequenceClassification

    mos = HubertForSequenceClassification(HubertConfig(**small, num_labels=1)).eval()  # a regression head
    mos.save_pretrained(tmp_path / "mos")
    features.save_pretrained(tmp_path / "mos")

    out = tmp_path / "eval"
    run = CliRunner().invoke(app, ["eval", "resynth", *map(str, speech_files[:2]), "-t", str(tiny_codec), "-o", str(out),
                                   "--speaker-model", str(tmp_path / "sv"), "--asr-model", str(tmp_path / "asr"),
                                   "--mos-model", str(tmp_path / "mos"), "-q"])
    assert run.exit_code == 0, run.output
    rows = [json.loads(line) for line in (out / "utterances.jsonl").read_text().splitlines()]

    def normalised(wave):
        return torch.from_numpy(((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)).astype(np.float32))[None]

    def transcript(wave):  # greedy CTC by hand: argmax, repeats merged, blanks dropped, | as space
        with torch.no_grad():
            best = asr(normalised(wave)).logits[0].argmax(-1).tolist()
        chars = {i: c for c, i in vocab.items()}
        merged = [b for k, b in enumerate(best) if k == 0 or b != best[k - 1]]
        return " ".join("".join(" " if chars[b] == "|" else chars[b] for b in merged if b not in (0, 1)).split())

    for row in rows:
        original, _ = sf.read(out / "audio" / f"{row['n']}.orig.wav", dtype="float32")
        resynth, _ = sf.read(out / "audio" / f"{row['n']}.resynth.wav", dtype="float32")
        with torch.no_grad():
            a, b = (speaker(normalised(w)).embeddings[0].numpy() for w in (original, resynth))
        assert row["speaker_similarity"] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), abs=1e-5)
        with torch.no_grad():
            assert row["mos"] == pytest.approx(float(mos(normalised(resynth)).logits[0, 0]), abs=1e-5)
            assert row["mos_original"] == pytest.approx(float(mos(normalised(original)).logits[0, 0]), abs=1e-5)
        ref, hyp = transcript(original).split(), transcript(resynth).split()
        assert ref, "the test's ASR model should say something"
        assert row["dwer"] == pytest.approx(edit_distance(ref, hyp) / len(ref))

    # offline, a model that is not here: said, left out, everything else still measured
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = CliRunner().invoke(app, ["eval", "resynth", *map(str, speech_files[:2]), "-t", str(tiny_codec), "-o",
                                   str(tmp_path / "offline"), "--speaker-model", "someone/not-cached-sv"])
    assert run.exit_code == 0, run.output
    assert "speaker_similarity left out" in run.output and "hf download someone/not-cached-sv" in run.output
    summary = json.loads((tmp_path / "offline" / "eval.json").read_text())
    assert "speaker_similarity" in summary["skipped"] and summary["metrics"]["pesq"]["count"] == 2


def test_eval_resynth_of_units_through_a_unit_vocoder(tmp_path, model_dir, speech_files):
    """GSLM style: HuBERT layer 2 k-means (K=100) + a fairseq CodeHiFiGAN, all tiny and random."""
    import json

    import joblib
    import soundfile as sf
    import soxr
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
    made = runner.invoke(app, ["import", "kmeans", str(tmp_path / "km.bin"), "--encoder", str(model_dir("hubert-group")),
                               "--layers", "2", "--vocoder", str(tmp_path / "voc" / "g_00100000"), "-o", str(tmp_path / "tok")])
    assert made.exit_code == 0, made.output
    run = runner.invoke(app, ["eval", "resynth", *map(str, speech_files[:2]), "-t", str(tmp_path / "tok"), "-o",
                              str(tmp_path / "eval"), "-q"])
    assert run.exit_code == 0, run.output
    rows = [json.loads(line) for line in (tmp_path / "eval" / "utterances.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["pesq"] is not None and r["mcd"] > 0 for r in rows)
    tokenizer = speechtok.load(str(tmp_path / "tok"))
    for row in rows:  # the kept resynthesis is the vocoder's output for the file, at 16 kHz
        audio = tokenizer.decode(tokenizer.encode(row["source"]))
        if tokenizer.decode_sample_rate != SR:
            audio = soxr.resample(audio, tokenizer.decode_sample_rate, SR)
        kept, _ = sf.read(tmp_path / "eval" / "audio" / f"{row['n']}.resynth.wav", dtype="float32")
        np.testing.assert_allclose(kept, audio[: len(kept)], atol=1e-5)
    summary = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert summary["bitrate"] == pytest.approx(50 * np.log2(100))
