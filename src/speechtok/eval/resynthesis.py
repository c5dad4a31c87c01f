"""How well speech survives a round trip (codec or units + vocoder): metrics of a resynthesised
wave against its original, both mono at the same sample rate and already cut to the same length.

    pesq           wide-band PESQ (ITU-T P.862.2; the `pesq` package), 16 kHz; -0.5 .. 4.64
    stoi, estoi    (extended) short-time objective intelligibility (`pystoi`); 0 .. 1
    si_sdr         scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019)
    mcd            mel-cepstral distortion in dB: (10 / ln 10) sqrt(2 sum_d (c_d - c'_d)^2) over
                   cepstra 1..12 (c0, the level, left out), frames paired in time (a round trip
                   keeps the timing, so no DTW), averaged over frames; cepstra are librosa's MFCC
                   (natural-log mel power, orthonormal DCT), a common stand-in for SPTK's mcep
    log_mel        mean absolute difference of log10 mel power spectra (80 bands, 1024 / 256)
    f0_rmse        RMS difference in Hz of F0 over frames voiced in both (librosa's pYIN, 10 ms
                   frames)
    f0_corr        Pearson correlation of those F0 values
    voicing_error  share of frames whose voiced / unvoiced decision differs

Every function returns a float; nan where it is undefined (F0 of an unvoiced pair, PESQ or
SI-SDR of a silent wave, STOI of less than 30 frames of speech), never an exception for a short
or quiet utterance.
"""

from __future__ import annotations

import math

import numpy as np

PESQ_RATE = 16000
MCD_COEFFICIENTS = 13  # c0 .. c12; c0 is left out of the distance
F0_RATE = 16000
SILENT_POWER = 1e-12  # mean square below this (-120 dB full scale): silence
STOI_TOO_SHORT = 1e-5  # what pystoi returns when there are fewer than 30 frames of speech


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """10 log10(|s|^2 / |s - e|^2) with s = the part of `estimate` along `reference`
    (means removed first), so any gain on the estimate scores the same."""
    x = np.asarray(reference, dtype=np.float64) - np.mean(reference)
    y = np.asarray(estimate, dtype=np.float64) - np.mean(estimate)
    energy = float(x @ x)
    silent = SILENT_POWER * max(len(x), 1)  # a constant wave leaves float32 rounding after its mean
    if energy <= silent or float(y @ y) <= silent:  # a silent (or constant) wave: nothing to compare
        return float("nan")
    target = (float(x @ y) / energy) * x
    noise = y - target
    noise_energy = float(noise @ noise)
    if noise_energy == 0.0:
        return float("inf")
    return 10.0 * math.log10(float(target @ target) / noise_energy)


def mel_cepstra(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """[frames, 13] MFCC (librosa: natural-log mel power + orthonormal DCT-II)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=np.asarray(wave, dtype=np.float32), sr=sample_rate, n_fft=1024,
                                         hop_length=256, n_mels=80)
    return librosa.feature.mfcc(S=np.log(mel + 1e-10), n_mfcc=MCD_COEFFICIENTS, dct_type=2, norm="ortho").T


def mel_cepstral_distortion(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    a, b = mel_cepstra(reference, sample_rate), mel_cepstra(estimate, sample_rate)
    n = min(len(a), len(b))
    if n == 0:
        return float("nan")
    diff = a[:n, 1:] - b[:n, 1:]
    return float(np.mean(10.0 / math.log(10.0) * np.sqrt(2.0 * np.sum(diff**2, axis=1))))


def log_mel_distance(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    import librosa

    def log_mel(wave):
        mel = librosa.feature.melspectrogram(y=np.asarray(wave, dtype=np.float32), sr=sample_rate, n_fft=1024,
                                             hop_length=256, n_mels=80)
        return np.log10(mel + 1e-5)

    a, b = log_mel(reference), log_mel(estimate)
    n = min(a.shape[1], b.shape[1])
    return float(np.mean(np.abs(a[:, :n] - b[:, :n]))) if n else float("nan")


def f0_track(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """F0 in Hz every 10 ms, 0 where unvoiced (librosa's pYIN, 60-600 Hz, 64 ms frames, at 16 kHz)."""
    import librosa

    x = resample(wave, sample_rate, F0_RATE)
    f0, voiced, _ = librosa.pyin(x, fmin=60.0, fmax=600.0, sr=F0_RATE, frame_length=1024, hop_length=F0_RATE // 100)
    return np.where(voiced, np.nan_to_num(f0), 0.0)


def f0_metrics(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> dict[str, float]:
    a, b = f0_track(reference, sample_rate), f0_track(estimate, sample_rate)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    voiced_a, voiced_b = a > 0, b > 0
    both = voiced_a & voiced_b
    out = {"voicing_error": float(np.mean(voiced_a != voiced_b)) if n else float("nan"),
           "f0_rmse": float(np.sqrt(np.mean((a[both] - b[both]) ** 2))) if both.any() else float("nan"),
           "f0_corr": float("nan")}
    if both.sum() >= 3 and np.std(a[both]) > 0 and np.std(b[both]) > 0:
        out["f0_corr"] = float(np.corrcoef(a[both], b[both])[0, 1])
    return out


def pesq_wb(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """Wide-band PESQ at 16 kHz (other rates resampled); nan where the reference has no speech
    the model can find."""
    from pesq import PesqError, pesq

    reference, estimate = resample(reference, sample_rate, PESQ_RATE), resample(estimate, sample_rate, PESQ_RATE)
    try:
        return float(pesq(PESQ_RATE, reference, estimate, "wb", on_error=PesqError.RAISE_EXCEPTION))
    except (PesqError, ValueError):  # no utterance found, a silent estimate, too short
        return float("nan")


def stoi(reference: np.ndarray, estimate: np.ndarray, sample_rate: int, extended: bool = False) -> float:
    import warnings

    from pystoi import stoi as pystoi

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Not enough STFT frames": answered below
            value = float(pystoi(np.asarray(reference, np.float64), np.asarray(estimate, np.float64), sample_rate,
                                 extended=extended))
    except (ValueError, IndexError):  # shorter than one analysis frame
        return float("nan")
    return float("nan") if value == STOI_TOO_SHORT else value


def compare(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> dict[str, float]:
    """Every metric above; the two waves are cut to the shorter one's length first."""
    n = min(len(reference), len(estimate))
    reference, estimate = np.asarray(reference[:n], np.float32), np.asarray(estimate[:n], np.float32)
    return {"pesq": pesq_wb(reference, estimate, sample_rate), "stoi": stoi(reference, estimate, sample_rate),
            "estoi": stoi(reference, estimate, sample_rate, extended=True), "si_sdr": si_sdr(reference, estimate),
            "mcd": mel_cepstral_distortion(reference, estimate, sample_rate),
            "log_mel": log_mel_distance(reference, estimate, sample_rate), **f0_metrics(reference, estimate, sample_rate)}


METRICS = ("pesq", "stoi", "estoi", "si_sdr", "mcd", "log_mel", "f0_rmse", "f0_corr", "voicing_error")
MODEL_METRICS = ("speaker_similarity", "dwer", "mos", "mos_original")  # when a model is named (`corpus.judges`)
HIGHER_IS_BETTER = {"pesq": True, "stoi": True, "estoi": True, "si_sdr": True, "mcd": False, "log_mel": False,
                    "f0_rmse": False, "f0_corr": True, "voicing_error": False, "speaker_similarity": True,
                    "dwer": False, "mos": True, "mos_original": True}


def rows_csv(rows: list[dict], leading: tuple[str, ...] = ()) -> str:
    """Utterance rows (`eval resynth`'s) as CSV, the `leading` columns first."""
    import csv
    import io

    columns = [*leading, "n", "id", "source", "seconds", "tokens_per_second", *METRICS, *MODEL_METRICS, "error"]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def require_packages() -> None:
    """Raise a clear error naming what to install when a metric's package is missing."""
    import importlib.util

    from ..errors import InputError

    missing = [name for name in ("pesq", "pystoi", "librosa", "matplotlib") if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"resynthesis metrics need {', '.join(missing)}: pip install \"speechtok[quality]\"")


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """float32 `wave` at `target` Hz (soxr)."""
    if rate == target:
        return np.asarray(wave, np.float32)
    import soxr

    return soxr.resample(np.asarray(wave, np.float32), rate, target).astype(np.float32)
