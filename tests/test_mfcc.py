"""MFCCEncoder against the Kaldi MFCC formulas written out in numpy (float64), and fairseq's deltas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechtok import MFCCEncoder

SR = 16000


def kaldi_mfcc(x: np.ndarray, sr: int = SR) -> np.ndarray:
    """Kaldi `compute-mfcc-feats` / torchaudio `compliance.kaldi.mfcc` defaults as fairseq uses them:
    25 ms povey windows every 10 ms (snip_edges), DC removed, pre-emphasis 0.97, 512-point FFT
    power spectrum, 23 triangular mel bins over 20 Hz..Nyquist, log (floored at float eps),
    orthonormal DCT-II keeping 13, sinusoidal lifter 22, no energy, no dither."""
    x = x.astype(np.float64)
    win, shift, nfft, bins, ceps = int(0.025 * sr), int(0.010 * sr), 512, 23, 13
    count = 1 + (len(x) - win) // shift
    frames = np.stack([x[t * shift : t * shift + win] for t in range(count)])
    frames = frames - frames.mean(axis=1, keepdims=True)
    previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)  # x[-1] := x[0]
    frames = frames - 0.97 * previous
    n = np.arange(win)
    frames = frames * (0.5 - 0.5 * np.cos(2 * np.pi * n / (win - 1))) ** 0.85
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2

    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    low, high = mel(20.0), mel(sr / 2)
    step = (high - low) / (bins + 1)
    fft_mel = mel(np.arange(nfft // 2) * sr / nfft)
    banks = np.zeros((bins, nfft // 2 + 1))
    for b in range(bins):
        left, center, right = low + b * step, low + (b + 1) * step, low + (b + 2) * step
        up = (fft_mel - left) / (center - left)
        down = (right - fft_mel) / (right - center)
        inside = (fft_mel > left) & (fft_mel < right)
        banks[b, : nfft // 2] = np.where(inside, np.where(fft_mel <= center, up, down), 0.0)
    log_mel = np.log(np.maximum(power @ banks.T, np.finfo(np.float32).eps))

    k, j = np.arange(ceps)[:, None], np.arange(bins)[None, :]
    dct = np.sqrt(2.0 / bins) * np.cos(np.pi / bins * (j + 0.5) * k)
    dct[0] = np.sqrt(1.0 / bins)
    lifter = 1.0 + 0.5 * 22 * np.sin(np.pi * np.arange(ceps) / 22)
    return (log_mel @ dct.T) * lifter


def deltas_by_definition(c: np.ndarray) -> np.ndarray:
    """d_t = sum_{n=1,2} n (c_{t+n} - c_{t-n}) / 10, frame indices clamped to the edges."""
    t_max = len(c) - 1
    out = np.zeros_like(c)
    for t in range(len(c)):
        for n in (1, 2):
            out[t] += n * (c[min(t + n, t_max)] - c[max(t - n, 0)])
    return out / 10.0


def test_mfcc_matches_kaldi_definition(speech_waves):
    wave = speech_waves[0]
    expected = kaldi_mfcc(wave)
    got = MFCCEncoder().mfcc(wave)
    assert got.shape == (1 + (len(wave) - 400) // 160, 13)
    # float32 against float64: log-mel of near-silent frames is where rounding shows most.
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=5e-3)
    assert np.abs(got - expected).mean() < 2e-4


def test_mfcc_matches_kaldi_native_fbank(speech_waves):
    # a second, independent implementation of Kaldi's MFCC (a frame at a time, in C++)
    knf = pytest.importorskip("kaldi_native_fbank")
    options = knf.MfccOptions()
    frame = options.frame_opts
    frame.samp_freq, frame.dither, frame.window_type, frame.snip_edges = float(SR), 0.0, "povey", True
    frame.frame_length_ms, frame.frame_shift_ms, frame.preemph_coeff, frame.remove_dc_offset = 25.0, 10.0, 0.97, True
    options.mel_opts.num_bins, options.mel_opts.low_freq, options.mel_opts.high_freq = 23, 20.0, 0.0
    options.num_ceps, options.use_energy, options.cepstral_lifter = 13, False, 22.0
    for wave in speech_waves[:3]:
        computer = knf.OnlineMfcc(options)
        computer.accept_waveform(float(SR), wave)
        computer.input_finished()
        expected = np.stack([computer.get_frame(i) for i in range(computer.num_frames_ready)])
        got = MFCCEncoder().mfcc(wave)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=5e-3)
        assert np.abs(got - expected).mean() < 2e-4


def test_features_are_mfcc_deltas_and_delta_deltas(speech_waves):
    wave = speech_waves[2]
    features = MFCCEncoder().encode(wave, sample_rate=SR)["mfcc"].numpy()
    c = kaldi_mfcc(wave)
    d = deltas_by_definition(c)
    dd = deltas_by_definition(d)
    assert features.shape == (1 + (len(wave) - 400) // 160, 39)
    np.testing.assert_allclose(features, np.concatenate([c, d, dd], axis=1), rtol=1e-4, atol=5e-3)


@pytest.mark.parametrize("n", [400, 401, 559, 560, 16000, 48123])
def test_frame_count(n):
    wave = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    encoder = MFCCEncoder()
    assert encoder.frame_rate == 100.0
    assert encoder.encode(wave, sample_rate=SR)["mfcc"].shape == (1 + (n - 400) // 160, 39)


def test_resampled_input(speech_files):
    """Files at other rates are resampled to 16 kHz first (espeak writes 22.05 kHz)."""
    import soundfile as sf

    info = sf.info(str(speech_files[0]))
    features = MFCCEncoder().encode(speech_files[0])["mfcc"]
    n16 = round(info.frames * SR / info.samplerate)
    assert abs(features.shape[0] - (1 + (n16 - 400) // 160)) <= 1


def test_long_waves_are_computed_in_blocks_with_the_same_frames(monkeypatch):
    from speechtok.encoders.mfcc import KaldiMfcc

    wave = (np.random.default_rng(3).standard_normal(SR * 3 + 77) * 0.1).astype(np.float32)
    whole = KaldiMfcc(SR)(wave)
    monkeypatch.setattr(KaldiMfcc, "BLOCK_FRAMES", 37)
    # frame-local: the same frames, up to the float32 rounding of a matrix product of another height
    np.testing.assert_allclose(KaldiMfcc(SR)(wave).numpy(), whole.numpy(), rtol=0, atol=1e-5)
    assert KaldiMfcc(SR)(wave[:399]).shape == (0, 13)  # shorter than a window: no frames


@pytest.mark.parametrize("pieces", [1, 7, 400])
def test_a_wave_given_in_pieces_has_the_whole_waves_features(monkeypatch, speech_waves, pieces):
    # what long files streamed through a job get: pieces of any size, several blocks of frames,
    # deltas across block edges and at both ends of the wave
    from speechtok.encoders.mfcc import KaldiMfcc

    monkeypatch.setattr(KaldiMfcc, "BLOCK_FRAMES", 53)
    encoder = MFCCEncoder()
    wave = np.concatenate(speech_waves)[: SR * 4 + 123]
    whole = encoder.forward_batch([wave])[0]["mfcc"]
    blocks = [b["mfcc"] for b in encoder.feature_blocks(np.array_split(wave, pieces))]
    assert len(blocks) > 3 and all(len(b) for b in blocks)
    assert torch.equal(torch.cat(blocks), whole)  # bit for bit, not only close
    short = wave[:SR // 20]  # fewer frames than the deltas' context
    assert torch.equal(torch.cat([b["mfcc"] for b in encoder.feature_blocks([short[:300], short[300:]])]),
                       encoder.forward_batch([short])[0]["mfcc"])


def test_files_computed_together_get_their_own_features_and_tokens(varied_waves):
    # short files are computed a batch at a time (MFCC frames, deltas, k-means assignment): each
    # must get exactly what it gets alone, tiny files (1-3 frames) included
    from speechtok import KMeans, Tokenizer
    from speechtok.encoders.mfcc import deltas

    encoder = MFCCEncoder()
    waves = [w for w in varied_waves] + [varied_waves[0][:400], varied_waves[1][:560], varied_waves[2][:881]]
    together = encoder.forward_batch(waves)
    for wave, features in zip(waves, together):
        ceps = encoder.kaldi(wave)  # one wave, its own blocks: the reference computation
        d = deltas(ceps)
        assert torch.equal(features["mfcc"], torch.cat([ceps, d, deltas(d)], dim=1))
    assert [len(f["mfcc"]) for f in together[-3:]] == [1, 2, 4]
    tok = Tokenizer(encoder, {"mfcc": KMeans.fit(torch.cat([f["mfcc"] for f in together]), 40, seed=0)})
    batched = tok.encode_batch(waves, sample_rate=SR)
    for wave, units in zip(waves, batched):
        assert np.array_equal(units.codes, tok.encode(wave, sample_rate=SR).codes)
