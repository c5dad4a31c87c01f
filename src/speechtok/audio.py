"""Audio at the edge of the library: read, downmix, resample, validate.

Everything inside speechtok works on float32 mono audio in [-1, 1] at the encoder's sample rate;
this module is the one place where other forms are converted to that, and where audio that is
readable but cannot be a recording (a peak of 1e30, a rate of 1 Hz) is refused.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Union

import numpy as np
import soundfile as sf
import soxr

from .errors import InputError

AudioSource = Union[str, os.PathLike, np.ndarray, "torch.Tensor"]  # noqa: F821

# Float audio is on a [-1, 1] scale. Files from real tools overshoot a little (inter-sample peaks,
# gain after mastering), so only a peak far beyond that is refused: such values are not a
# recording on the float scale (a bad export, or integer PCM values stored as floats), and every
# frame of them would quantize to the same code.
MAX_PEAK = 1000.0
# What libsndfile reads (soundfile's available formats), as file extensions: the audio files that
# directories, globs, object-store prefixes and WebDataset tars are searched for.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64", ".caf", ".sph")
# Speech needs a few kHz; below this a "rate" is a wrong header or argument, and resampling from it
# to 16 kHz would multiply the sample count (1 Hz -> 16000 samples per sample).
MIN_SAMPLE_RATE = 1000


class AudioError(InputError):
    """Audio that cannot be encoded. `source` names the file (or array), `reason` says why."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")

    def __reduce__(self):  # picklable across processes (thread / Ray workers)
        return (AudioError, (self.source, self.reason))


@dataclass(frozen=True)
class Reading:
    """How a front end reads audio, without the front end: `load_audio` at `sample_rate` with at
    least `min_samples`, then `prepare` (a module-level function, so this pickles by name). A
    process that only reads (a Ray read actor) builds this, not the model."""

    sample_rate: int
    min_samples: int = 1
    prepare: Callable[[np.ndarray], np.ndarray] | None = None

    def __call__(self, source: AudioSource, sample_rate: int | None = None, start: float | None = None,
                 duration: float | None = None, name: str | None = None) -> np.ndarray:
        wave = load_audio(source, self.sample_rate, sample_rate, self.min_samples, name, start=start, duration=duration)
        return wave if self.prepare is None else self.prepare(wave)

    @property
    def streamable(self) -> bool:
        """Whether a file can be read as it is encoded (`stream_file`): nothing is done to the
        whole utterance."""
        return self.prepare is None


def readable(text: str) -> str:
    """`text` as valid UTF-8 for files and tables: a file name's bytes that are not UTF-8 (which
    Python holds as surrogates) become `\\xNN` escapes. Valid text is returned unchanged."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def describe(source: AudioSource) -> str:
    """A short name for error messages: the path, or the shape of an array."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    shape = tuple(getattr(source, "shape", ()))
    return f"<array shape={shape}>"


def load_audio(
    source: AudioSource,
    target_rate: int,
    sample_rate: int | None = None,
    min_samples: int = 1,
    name: str | None = None,
    start: float | None = None,
    duration: float | None = None,
) -> np.ndarray:
    """Return `source` as float32 mono at `target_rate`, or raise AudioError.

    `source` is a path to anything libsndfile reads (wav, flac, ogg, mp3, ...) or an array with its
    `sample_rate`. `start` / `duration` (seconds) read a segment of a file. Arrays are [samples] or
    [samples, channels] (soundfile's layout); a 2-D array whose first dimension is the smaller one
    is taken as [channels, samples] (torch's layout).
    Integer arrays are scaled to [-1, 1] by their type's range. Refused (AudioError): a sample
    rate below MIN_SAMPLE_RATE, NaN / Inf samples, and a peak above MAX_PEAK.
    """
    label = name or describe(source)
    if isinstance(source, (str, os.PathLike)) or hasattr(source, "read"):
        wave, rate = _read_file(source if hasattr(source, "read") else Path(source), label, target_rate, start, duration)
        if sample_rate is not None and sample_rate != rate:
            raise AudioError(label, f"file is {rate} Hz but sample_rate={sample_rate} was given")
    else:
        if sample_rate is None:
            raise AudioError(label, "an array needs its sample_rate")
        wave, rate = _from_array(source, label), int(sample_rate)
        _check_rate(rate, label)
        if wave.size == 0:
            raise AudioError(label, "no samples (empty audio)")
        _check_samples(wave, label)
        wave = _to_mono(wave).astype(np.float32, copy=False)
        if rate != target_rate:
            wave = soxr.resample(wave, rate, target_rate).astype(np.float32, copy=False)
    if len(wave) < min_samples:
        raise AudioError(
            label,
            f"too short: {len(wave)} samples at {target_rate} Hz "
            f"({len(wave) / target_rate * 1000:.1f} ms); the encoder needs at least {min_samples}",
        )
    return np.ascontiguousarray(wave, dtype=np.float32)


def _check_rate(rate: int, label: str) -> None:
    if rate < MIN_SAMPLE_RATE:
        raise AudioError(label, f"sample rate {rate} Hz is below {MIN_SAMPLE_RATE} Hz; no speech recording "
                                "has that rate (a damaged header, or a wrong sample_rate)")


def _check_samples(block: np.ndarray, label: str) -> None:
    """Refuse NaN / Inf and peaks far outside [-1, 1]. Checked before the downmix (opposite
    channels would cancel) and at the precision the samples came in (float64 beyond float32's
    range would become Inf on the cast and be misreported)."""
    if not np.isfinite(block).all():
        raise AudioError(label, "contains NaN or Inf samples")
    peak = max(float(block.max()), -float(block.min()))  # no |block| copy
    if peak > MAX_PEAK:
        raise AudioError(label, f"peak amplitude {peak:.3g} is far outside [-1, 1] (more than {MAX_PEAK:g}): "
                                "not float audio on the usual scale (integer PCM values stored as floats "
                                "need dividing by 32768)")


# A file is read, checked, downmixed and resampled this many frames at a time (soxr's streaming
# resampler gives exactly its one-shot output), so reading holds a block and the mono output,
# never the whole file at its own rate and channel count (1 h of 44.1 kHz stereo: 1.3 GB as float32).
BLOCK_FRAMES = 1 << 18


def _read_file(path: Path | BinaryIO, label: str, target_rate: int, start: float | None = None,
               duration: float | None = None) -> tuple[np.ndarray, int]:
    """(mono float32 at `target_rate`, the file's rate) of `path` (or an open binary file of
    encoded audio, e.g. bytes from a container) or its segment."""
    with _open(path, label, start, duration) as f:
        # libsndfile knows the length (capped: a format that does not would ask for absurd sizes)
        output = _Output(min(_output_length(f, target_rate, start, duration) + 64, 1 << 27))
        for block in _blocks(f, label, target_rate, start, duration):
            output.append(block)
    return output.array(), int(f.samplerate)


def stream_file(path: str | os.PathLike, target_rate: int, start: float | None = None, duration: float | None = None,
                name: str | None = None) -> tuple[int, Iterator[np.ndarray]]:
    """(the length `load_audio` would give, an iterator of its samples) for the file at `path` (or
    its segment), read block by block when the iterator is consumed: for files too long to hold. The
    blocks are `load_audio`'s output in pieces, with the same checks (raised as they are met)."""
    label = name or describe(path)
    with _open(Path(path), label, start, duration) as f:
        length = _output_length(f, target_rate, start, duration)

    def blocks() -> Iterator[np.ndarray]:
        with _open(Path(path), label, start, duration) as f:
            yield from _blocks(f, label, target_rate, start, duration)

    return length, blocks()


@contextmanager
def _open(path: Path | BinaryIO, label: str, start: float | None, duration: float | None) -> Iterator[sf.SoundFile]:
    """The file, checked (a path that is a file, a rate, a segment inside it), as an open SoundFile."""
    if isinstance(path, Path):
        _check_path(path, label)
    if (start or 0) < 0 or (duration is not None and duration <= 0):
        raise AudioError(label, f"invalid segment start={start} duration={duration} (seconds)")
    try:
        # a path by its bytes: a name that is not valid UTF-8 (held as surrogates by Python) still opens
        f = sf.SoundFile(os.fsencode(path) if isinstance(path, Path) else path)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(label, f"unreadable or corrupt audio ({err})") from None
    with f:
        _check_rate(f.samplerate, label)
        first = round((start or 0) * f.samplerate)
        if first and f.frames > 0 and first >= f.frames:
            raise AudioError(label, f"segment starts at {start} s, after the end ({f.frames / f.samplerate:.3f} s)")
        yield f


def _output_length(f: sf.SoundFile, target_rate: int, start: float | None, duration: float | None) -> int:
    """About how many samples at `target_rate` the file (segment) gives (what libsndfile says)."""
    first = round((start or 0) * f.samplerate)
    wanted = f.frames - first if duration is None else min(round(duration * f.samplerate), f.frames - first)
    return math.ceil(max(wanted, 0) * target_rate / f.samplerate)


def _blocks(f: sf.SoundFile, label: str, target_rate: int, start: float | None,
            duration: float | None) -> Iterator[np.ndarray]:
    """The samples of an open file (segment), checked, downmixed and resampled BLOCK_FRAMES at a
    time."""
    rate = f.samplerate
    frames = 0
    try:
        first = round((start or 0) * rate)
        if first:
            f.seek(first)
        remaining = -1 if duration is None else round(duration * rate)
        # 64-bit float files are read as such, so their magnitude is checked before the cast
        dtype = "float64" if f.subtype == "DOUBLE" else "float32"
        stream = None if rate == target_rate else soxr.ResampleStream(rate, target_rate, 1, dtype="float32")
        while remaining != 0:
            block = f.read(BLOCK_FRAMES if remaining < 0 else min(BLOCK_FRAMES, remaining), dtype=dtype, always_2d=True)
            remaining = max(remaining - len(block), 0) if remaining > 0 else remaining
            last = len(block) < BLOCK_FRAMES or remaining == 0
            frames += len(block)
            if len(block):
                _check_samples(block, label)
            mono = _to_mono(block).astype(np.float32)
            out = mono if stream is None else stream.resample_chunk(mono, last=last)
            if len(out):
                yield out
            if last:
                break
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        if isinstance(err, AudioError):
            raise
        raise AudioError(label, f"unreadable or corrupt audio ({err})") from None
    if frames == 0:
        raise AudioError(label, "no samples (empty audio)")


def _check_path(path: Path, label: str) -> None:
    if not path.exists():
        if path.is_symlink():
            raise AudioError(label, f"a broken symbolic link (to {os.readlink(path)}, which does not exist)")
        raise AudioError(label, "no such file")
    if path.is_dir():
        raise AudioError(label, "is a directory, not an audio file")
    if not path.is_file():  # reading a FIFO would wait forever
        raise AudioError(label, "not a regular file (a FIFO, socket or device)")


class _Output:
    """Samples appended block by block into one array allocated for the expected length, so the
    output is never held twice; grows (by copying) only if a file has more frames than it said."""

    def __init__(self, capacity: int):
        self.buffer = np.empty(capacity, dtype=np.float32)
        self.size = 0

    def append(self, block: np.ndarray) -> None:
        if self.size + len(block) > len(self.buffer):
            grown = np.empty(max(2 * len(self.buffer), self.size + len(block)), dtype=np.float32)
            grown[: self.size] = self.buffer[: self.size]
            self.buffer = grown
        self.buffer[self.size : self.size + len(block)] = block
        self.size += len(block)

    def array(self) -> np.ndarray:
        return self.buffer[: self.size]


def _from_array(array, label: str) -> np.ndarray:
    if hasattr(array, "detach"):  # torch.Tensor, without importing torch here
        array = array.detach().cpu().numpy()
    wave = np.asarray(array)
    if wave.ndim == 0 or wave.ndim > 2:
        raise AudioError(label, f"expected a 1-D or 2-D array, got {wave.ndim}-D")
    if np.issubdtype(wave.dtype, np.integer):
        info = np.iinfo(wave.dtype)
        wave = wave.astype(np.float32) / float(max(abs(info.min), info.max))
    elif not np.issubdtype(wave.dtype, np.floating):
        raise AudioError(label, f"unsupported sample type {wave.dtype}")
    if wave.dtype != np.float64:  # float64 stays until its magnitude is checked
        wave = wave.astype(np.float32, copy=False)
    if wave.ndim == 2 and wave.shape[0] < wave.shape[1]:
        wave = wave.T  # [channels, samples] -> [samples, channels]
    return wave


def _to_mono(wave: np.ndarray) -> np.ndarray:
    if wave.ndim == 2:
        wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    return wave
