"""Audio at the edge: formats, channels, rates, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speechtok import AudioError, load_audio


def tone(sr, seconds=1.0, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("fmt, subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_reads_formats_and_resamples(tmp_path, fmt, subtype):
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, tone(44100, channels=2), 44100, format=fmt, subtype=subtype)
    wave = load_audio(path, 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) < 1200  # mp3 adds encoder delay
    # The 440 Hz tone survives downmix + resampling.
    spectrum = np.abs(np.fft.rfft(wave[:16000] if len(wave) >= 16000 else wave, 16000))
    assert abs(int(spectrum.argmax()) - 440) <= 2


def test_arrays_int_and_channel_layouts():
    x = tone(16000)
    np.testing.assert_allclose(load_audio((x * 32767).astype(np.int16), 16000, 16000), x, atol=1e-4)
    stereo = np.stack([x, np.zeros_like(x)])  # [channels, samples], torch layout
    np.testing.assert_allclose(load_audio(stereo, 16000, 16000), x / 2, atol=1e-6)
    np.testing.assert_allclose(load_audio(stereo.T, 16000, 16000), x / 2, atol=1e-6)
    import torch

    np.testing.assert_allclose(load_audio(torch.from_numpy(x), 16000, 16000), x)


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.write_bytes(b"this is not audio at all" * 10), "unreadable or corrupt"),
    (lambda p: sf.write(p, np.zeros(0, np.float32), 16000), "empty"),
    (lambda p: sf.write(p, np.zeros(100, np.float32), 16000), "too short"),
])
def test_bad_files_name_the_file_and_reason(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=reason) as err:
        load_audio(path, 16000, min_samples=400)
    assert err.value.source == str(path)
    assert str(path) in str(err.value)


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(path, tone(16000), 16000)
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(AudioError, match="cut.wav"):
        load_audio(path, 16000, min_samples=400)


def test_array_errors():
    with pytest.raises(AudioError, match="NaN or Inf"):
        load_audio(np.array([0.1, np.nan] * 300, np.float32), 16000, 16000)
    with pytest.raises(AudioError, match="needs its sample_rate"):
        load_audio(np.zeros(1000, np.float32), 16000)
    with pytest.raises(AudioError, match="no such file"):
        load_audio("/nonexistent/x.wav", 16000)


def test_absurd_but_finite_audio_is_refused(tmp_path):
    """Readable audio that cannot be a recording: a peak of 1e30 (float WAV), float64 beyond the
    float32 range (reported as its magnitude, not as Inf after a cast), a rate of 1 Hz."""
    huge = tmp_path / "huge.wav"
    sf.write(huge, tone(16000) * 2e30, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="peak amplitude 1e\\+30 is far outside") as err:
        load_audio(huge, 16000)
    assert err.value.source == str(huge) and str(huge) in str(err.value)

    with pytest.raises(AudioError, match="peak amplitude 1e\\+40 is far outside"):
        load_audio(np.full(16000, 1e40), 16000, 16000)
    huge64 = tmp_path / "huge64.wav"
    sf.write(huge64, np.full(16000, -1e40), 16000, subtype="DOUBLE")
    with pytest.raises(AudioError, match="peak amplitude 1e\\+40"):
        load_audio(huge64, 16000)
    stereo = np.stack([tone(16000) * 2e30, -tone(16000) * 2e30], axis=1)  # cancels when downmixed
    with pytest.raises(AudioError, match="peak amplitude"):
        load_audio(stereo, 16000, 16000)

    slow = tmp_path / "slow.wav"
    sf.write(slow, tone(1, seconds=4), 1, subtype="FLOAT")
    for source, rate in [(slow, None), (tone(16000), 1), (tone(16000), 999)]:
        with pytest.raises(AudioError, match="sample rate .* Hz is below 1000 Hz"):
            load_audio(source, 16000, rate)


def test_float_audio_slightly_over_full_scale_loads(tmp_path):
    path = tmp_path / "hot.wav"
    sf.write(path, tone(16000) * 3.0, 16000, subtype="FLOAT")  # peak 1.5
    wave = load_audio(path, 16000)
    assert 1.49 < np.abs(wave).max() <= 1.5
    np.testing.assert_allclose(load_audio(tone(16000).astype(np.float64) * 3.0, 16000, 16000), tone(16000) * 3.0,
                               rtol=1e-6)


@pytest.mark.parametrize("block", [4096, 1 << 18])
def test_long_files_are_read_in_blocks_with_the_whole_file_result(tmp_path, monkeypatch, block):
    # Reading, checking, downmixing and resampling a block at a time equals doing it to the whole file.
    import soxr

    from speechtok import audio

    monkeypatch.setattr(audio, "BLOCK_FRAMES", block)
    rng = np.random.default_rng(0)
    stereo = (0.2 * rng.standard_normal((44100 * 9 + 123, 2))).astype(np.float32)
    path = tmp_path / "long.flac"
    sf.write(path, stereo, 44100, subtype="PCM_24")
    whole, _ = sf.read(path, dtype="float32", always_2d=True)
    expected = soxr.resample(whole.mean(axis=1).astype(np.float32), 44100, 16000)
    np.testing.assert_array_equal(load_audio(path, 16000), expected)
    segment = whole[int(2.5 * 44100) : int(2.5 * 44100) + int(4.2 * 44100)].mean(axis=1).astype(np.float32)
    np.testing.assert_array_equal(load_audio(path, 16000, start=2.5, duration=4.2), soxr.resample(segment, 44100, 16000))
    np.testing.assert_array_equal(load_audio(path, 44100), whole.mean(axis=1))  # no resampling


def test_a_bad_sample_late_in_a_long_file_is_found(tmp_path, monkeypatch):
    from speechtok import audio

    monkeypatch.setattr(audio, "BLOCK_FRAMES", 1000)
    wave = np.full(16000 * 3, 0.1, np.float32)
    wave[-5] = np.nan
    sf.write(tmp_path / "late.wav", wave, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(tmp_path / "late.wav", 16000)
