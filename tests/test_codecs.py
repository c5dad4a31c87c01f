"""Codec tokenizers: tiny random DAC / EnCodec / Mimi models saved like hub checkpoints, loaded
through `speechtok.load`, checked against the transformers models they wrap (whole-file pass),
against themselves one file at a time, and against Descript-layout checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import speechtok
from speechtok.cli import app
from speechtok.codecs import CodecError
from speechtok.tokenizer import CodecTokenizer

from .descript_dac import DescriptDAC


def _tiny(family: str):
    from transformers import DacConfig, DacModel, EncodecConfig, EncodecModel, MimiConfig, MimiModel

    torch.manual_seed({"dac": 0, "encodec": 1, "mimi": 2}[family])
    if family == "dac":
        return DacModel(DacConfig(encoder_hidden_size=4, downsampling_ratios=[2, 4, 5, 8], decoder_hidden_size=16,
                                  n_codebooks=4, codebook_size=64, codebook_dim=4, sampling_rate=16000))
    if family == "encodec":
        return EncodecModel(EncodecConfig(num_filters=4, hidden_size=16, upsampling_ratios=[8, 5, 4, 2],
                                          codebook_size=64, target_bandwidths=[1.5, 3.0, 6.0], num_lstm_layers=1,
                                          sampling_rate=24000))
    return MimiModel(MimiConfig(hidden_size=32, num_filters=4, num_hidden_layers=2, intermediate_size=64,
                                num_attention_heads=2, num_key_value_heads=2, codebook_size=64, codebook_dim=16,
                                num_quantizers=8, vector_quantization_hidden_dimension=16, upsample_groups=32))


@pytest.fixture(scope="module")
def codec_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("codecs")
    dirs = {}
    for family in ("dac", "encodec", "mimi"):
        _tiny(family).eval().save_pretrained(root / family)
        dirs[family] = root / family
    return dirs


def _signal(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """A chirp with noise: changes over time, so windows see different audio."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 180 * t * (1 + 0.3 * np.sin(0.7 * t))) + 0.05 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


@pytest.mark.parametrize("family,rate,frame_rate", [("dac", 16000, 50), ("encodec", 24000, 75), ("mimi", 24000, 12.5)])
def test_round_trip_length_and_rates(codec_dirs, family, rate, frame_rate):
    tok = speechtok.load(str(codec_dirs[family]))
    assert isinstance(tok, CodecTokenizer) and tok.sample_rate == rate and tok.frame_rate == frame_rate
    wave = _signal(2.3, 16000)  # given at 16 kHz: resampled to the codec's rate on the way in
    units = tok.encode(wave, 16000)
    n = int(round(2.3 * rate))
    assert units.num_samples == n and units.sample_rate == rate
    assert units.streams == tuple(f"q{i}" for i in range(tok.n_quantizers))
    assert len(units) == int(np.ceil(n / (rate / frame_rate)))
    audio = tok.decode(units)
    assert audio.dtype == np.float32 and audio.shape == (n,)


@pytest.mark.parametrize("family", ["dac", "encodec", "mimi"])
def test_codes_equal_the_transformers_model_whole_file(codec_dirs, family):
    """Our codes and audio are those of the wrapped model called on the whole file (batch 1)."""
    # EnCodec through transformers' own call: its published 3 kbps = floor(3000 / 450) = 6 codebooks
    tok = speechtok.load(str(codec_dirs[family]), n_quantizers={"dac": 4, "encodec": 6, "mimi": 8}[family])
    from transformers import DacModel, EncodecModel, MimiModel

    # a fresh copy: speechtok's own is sped up in place (Snake), this one is transformers' as shipped
    model = {"dac": DacModel, "encodec": EncodecModel, "mimi": MimiModel}[family].from_pretrained(codec_dirs[family])
    model.eval()
    wave = _signal(3.1, tok.sample_rate, seed=3)
    units = tok.encode(wave, tok.sample_rate)
    x = torch.from_numpy(wave)[None, None]
    with torch.no_grad():
        if family == "dac":  # DAC's own feature extractor pads to a multiple of the hop
            x = torch.nn.functional.pad(x, (0, (-x.shape[-1]) % 320))
            codes = model.encode(x, n_quantizers=4).audio_codes[0]
            audio = model.decode(audio_codes=codes[None]).audio_values[0]
        elif family == "encodec":
            out = model.encode(x, bandwidth=3.0)
            codes = out.audio_codes[0, 0]
            audio = model.decode(out.audio_codes, out.audio_scales).audio_values[0, 0]
        else:
            codes = model.encode(x, num_quantizers=8).audio_codes[0]
            audio = model.decode(codes[None]).audio_values[0, 0]
    np.testing.assert_array_equal(units.codes, codes.T.numpy())
    ours = tok.decode(units)
    n = min(len(audio), len(wave))
    np.testing.assert_allclose(ours[:n], audio[:n].numpy(), atol=1e-5)


def _assert_same_audio(windowed: np.ndarray, whole: np.ndarray) -> None:
    """Equal to float rounding: 1e-6 of the peak (float32 differences measured ~1e-7 of it; a
    decoder window with 2 frames of context instead of its receptive field is ~3e-5 off)."""
    assert windowed.shape == whole.shape
    np.testing.assert_allclose(windowed, whole, rtol=0, atol=1e-6 * np.abs(whole).max())


def test_dac_ten_minutes_windowed_equals_whole(codec_dirs):
    """30 s windows with receptive-field context give exactly the whole-file codes, and audio
    equal to float tolerance."""
    tok = speechtok.load(str(codec_dirs["dac"]))  # default 30 s windows
    whole = speechtok.load(str(codec_dirs["dac"]), window_seconds=1e6)
    wave = _signal(600, 16000, seed=5)
    units = tok.encode(wave, 16000)
    assert len(units) == 600 * 50
    np.testing.assert_array_equal(units.codes, whole.encode(wave, 16000).codes)
    _assert_same_audio(tok.decode(units), whole.decode(units))


def test_windows_do_not_seam_with_short_windows(codec_dirs):
    """Many window edges (0.5 s windows): still the whole-file codes and audio for DAC."""
    whole = speechtok.load(str(codec_dirs["dac"]), window_seconds=1e6)
    short = speechtok.load(str(codec_dirs["dac"]), window_seconds=0.5)
    wave = _signal(7.3, 16000, seed=6)
    units = whole.encode(wave, 16000)
    np.testing.assert_array_equal(short.encode(wave, 16000).codes, units.codes)
    _assert_same_audio(short.decode(units), whole.decode(units))


@pytest.mark.parametrize("family", ["dac", "encodec", "mimi"])
def test_batches_give_what_one_at_a_time_gives(codec_dirs, family):
    tok = speechtok.load(str(codec_dirs[family]), window_seconds=2.0)
    sr = tok.sample_rate
    waves = [_signal(s, sr, seed=i) for i, s in enumerate([1.0, 3.7, 1.0, 0.4, 5.2, 2.0])]
    tok.batch_seconds = 0
    alone = [tok.encode(w, sr) for w in waves]
    tok.batch_seconds = 100
    batched = tok.encode_batch(waves, sr)
    for a, b in zip(alone, batched):
        np.testing.assert_array_equal(a.codes, b.codes)
    audio = tok.decode_batch(batched)
    tok.batch_seconds = 0
    for units, together in zip(alone, audio):
        np.testing.assert_allclose(tok.decode(units), together, atol=1e-6)


def test_quantizer_choice_and_validation(codec_dirs):
    dac = speechtok.load(str(codec_dirs["dac"]), n_quantizers=2)
    assert dac.streams == ("q0", "q1") and dac.bandwidth == pytest.approx(2 * 50 * 6 / 1000)
    # bandwidth picks the count: each 64-entry codebook at 50 Hz is 0.3 kbps
    assert speechtok.load(str(codec_dirs["dac"]), bandwidth=0.9).n_quantizers == 3
    # fewer codebooks are a prefix of more (residual quantization)
    wave = _signal(1.0, 16000)
    full = speechtok.load(str(codec_dirs["dac"])).encode(wave, 16000)
    np.testing.assert_array_equal(dac.encode(wave, 16000).codes, full.codes[:, :2])
    with pytest.raises(CodecError, match="has 4 codebooks"):
        speechtok.load(str(codec_dirs["dac"]), n_quantizers=5)
    with pytest.raises(CodecError, match=r"offers 0.3, 0.6, 0.9, 1.2 kbps"):
        speechtok.load(str(codec_dirs["dac"]), bandwidth=1.0)
    with pytest.raises(CodecError, match="not both"):
        speechtok.load(str(codec_dirs["dac"]), n_quantizers=2, bandwidth=0.6)
    # stated defaults: DAC all codebooks, EnCodec and Mimi 8
    assert speechtok.load(str(codec_dirs["encodec"])).n_quantizers == 8
    assert speechtok.load(str(codec_dirs["mimi"])).n_quantizers == 8
    with pytest.raises(ValueError, match="apply to codec tokenizers"):
        speechtok.load("hubert-base-ls960-L9-km500", n_quantizers=2)


def test_decode_refuses_units_it_cannot_decode(codec_dirs):
    tok = speechtok.load(str(codec_dirs["dac"]))
    units = tok.encode(_signal(1.0, 16000), 16000)
    with pytest.raises(CodecError, match="deduplicated"):
        tok.decode(units.select("q0").dedup())
    with pytest.raises(CodecError, match="streams"):
        tok.decode(units.select("q1"))


def test_save_and_load_keeps_the_choice(codec_dirs, tmp_path):
    tok = speechtok.load(str(codec_dirs["dac"]), n_quantizers=3, window_seconds=10)
    tok.save_pretrained(tmp_path / "tok")
    again = speechtok.load(tmp_path / "tok")
    assert isinstance(again, CodecTokenizer) and again.n_quantizers == 3 and again.window_seconds == 10
    assert again.config() == tok.config()
    wave = _signal(1.5, 16000)
    np.testing.assert_array_equal(again.encode(wave, 16000).codes, tok.encode(wave, 16000).codes)


def _descript_checkpoint(path, speechbrain=False):
    torch.manual_seed(7)
    reference = DescriptDAC(speechbrain=speechbrain).eval()
    if speechbrain:  # SpeechBrain's checkpointer saves the bare state dict
        torch.save(reference.state_dict(), path)
    else:
        torch.save({"state_dict": reference.state_dict(), "metadata": {"kwargs": reference.kwargs}}, path)
    return reference


@pytest.mark.parametrize("speechbrain", [False, True])
def test_original_dac_checkpoint_gives_the_models_codes(tmp_path, speechbrain):
    path = tmp_path / ("dac.ckpt" if speechbrain else "weights.pth")
    reference = _descript_checkpoint(path, speechbrain)
    keys = torch.load(path, weights_only=True)
    keys = keys if speechbrain else keys["state_dict"]
    assert any(k.endswith("original0" if speechbrain else "weight_g") for k in keys)  # weight-normed on disk
    # SpeechBrain's file does not say its rate; Descript's does
    tok = speechtok.load(path, **({"sample_rate": 16000} if speechbrain else {}))
    wave = _signal(2.2, 16000, seed=9)
    units = tok.encode(wave, 16000)
    np.testing.assert_array_equal(units.codes.T, reference.encode(torch.from_numpy(wave)[None], 4)[0].numpy())
    expected = reference.decode(torch.from_numpy(units.codes.T)[None])[0].numpy()
    np.testing.assert_allclose(tok.decode(units)[: len(expected)], expected[: len(wave)], atol=1e-5)
    # saved as a tokenizer: the converted model travels with it
    tok.save_pretrained(tmp_path / "tok")
    assert (tmp_path / "tok" / "codec" / "config.json").exists()
    np.testing.assert_array_equal(speechtok.load(tmp_path / "tok").encode(wave, 16000).codes, units.codes)


def test_original_checkpoint_errors_name_the_problem(tmp_path):
    path = tmp_path / "weights.pth"
    reference = _descript_checkpoint(path)
    state = reference.state_dict()
    state["encoder.block.9.weight"] = torch.zeros(1)
    torch.save({"state_dict": state, "metadata": {"kwargs": reference.kwargs}}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"encoder\.block\.9\.weight"):
        speechtok.load(tmp_path / "extra.pth")
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "norate.pth")
    with pytest.raises(ValueError, match="sample_rate"):
        speechtok.load(tmp_path / "norate.pth")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"state_dict": reference.state_dict(), "metadata": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="not a loadable DAC checkpoint"):
        speechtok.load(tmp_path / "evil.pth")


def test_corpus_tokenize_decode_and_info(codec_dirs, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    waves = {f"utt{i}": _signal(s, 16000, seed=i) for i, s in enumerate([1.2, 0.7, 2.5])}
    for name, wave in waves.items():
        sf.write(audio / f"{name}.wav", wave, 16000)
    (audio / "broken.wav").write_text("not audio")
    runner = CliRunner()
    out, wavs = tmp_path / "units", tmp_path / "wavs"
    result = runner.invoke(app, ["tokenize", str(audio), "-t", str(codec_dirs["dac"]), "-o", str(out),
                                 "--n-quantizers", "3", "-q"])
    assert result.exit_code == 1, result.output  # the broken file is recorded, the rest tokenized
    assert [json.loads(line)["id"] for line in (out / "errors.jsonl").read_text().splitlines()] == ["broken"]
    import pandas as pd

    rows = pd.read_parquet(out / "data").set_index("id")
    tok = speechtok.load(str(codec_dirs["dac"]), n_quantizers=3)
    for name, wave in waves.items():
        units = tok.encode(wave, 16000)
        for q in range(3):
            np.testing.assert_array_equal(rows.loc[name, f"q{q}"], units.codes[:, q])
    result = runner.invoke(app, ["decode", str(out), "-o", str(wavs), "-q"])
    assert result.exit_code == 0, result.output
    for name, wave in waves.items():
        decoded, rate = sf.read(wavs / f"{name}.wav", dtype="float32")
        assert rate == 16000 and len(decoded) == len(wave)
        np.testing.assert_allclose(decoded, tok.decode(tok.encode(wave, 16000)), atol=1e-6)
    result = runner.invoke(app, ["info", str(codec_dirs["encodec"]), "--bandwidth", "1.8"])
    assert result.exit_code == 0, result.output
    assert "75 Hz" in result.output and "1800 bit/s" in result.output and "4 (choose" in result.output


def test_decode_of_units_without_a_decoder_is_a_clear_error(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(3):
        sf.write(audio / f"u{i}.wav", _signal(1.0, 16000, seed=i), 16000)
    runner = CliRunner()
    assert runner.invoke(app, ["fit-kmeans", str(audio), "-e", "mfcc", "-k", "4", "-o", str(tmp_path / "km"), "-q"]).exit_code == 0
    assert runner.invoke(app, ["tokenize", str(audio), "-t", str(tmp_path / "km"), "-o", str(tmp_path / "units"), "-q"]).exit_code == 0
    result = runner.invoke(app, ["decode", str(tmp_path / "units"), "-o", str(tmp_path / "wavs")])
    assert result.exit_code == 2 and "no decoder" in result.output
    assert not (tmp_path / "wavs").exists()


def test_codec_preset_from_hub_cache_and_offline_error(codec_dirs, tmp_path):
    """`dac-16khz` resolves descript/dac_16khz from the HF cache offline (the same loading code as
    a local directory), and a preset not in the cache fails at once naming what to fetch."""
    from .test_tokenizer import lay_out_hub_repo, run_offline

    hub = tmp_path / "hub"
    lay_out_hub_repo(hub, "descript/dac_16khz", {p.name: p for p in codec_dirs["dac"].iterdir()})
    wave = _signal(1.3, 16000, seed=4)
    np.save(tmp_path / "wave.npy", wave)
    code = ("import speechtok, numpy as np\n"
            f"u = speechtok.load('dac-16khz').encode(np.load({str(tmp_path / 'wave.npy')!r}), 16000)\n"
            "print(u.codes.tolist())\n")
    result = run_offline(code, hub, tmp_path / "st")
    assert result.returncode == 0, result.stderr
    expected = speechtok.load(str(codec_dirs["dac"])).encode(wave, 16000).codes
    np.testing.assert_array_equal(json.loads(result.stdout.strip().splitlines()[-1]), expected)
    result = run_offline("import speechtok; speechtok.load('mimi')", hub, tmp_path / "st")
    assert result.returncode != 0 and "hf download kyutai/mimi" in result.stderr
