"""Stage 1 of a corpus job: read, resample and prepare audio ahead of the encoder, in threads.

libsndfile, soxr and numpy release the GIL, so threads decode in parallel while the main thread
keeps the device busy. At most `prefetch` utterances are held read-but-not-consumed, so memory does
not depend on the corpus size.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from ..audio import AudioError, stream_file
from .containers import fetch
from .inputs import Utterance
from .remote import cached_copy, fetch_url, is_url

STREAM_SECONDS = 600.0  # files longer than this are encoded as they are read, where the stage can
STREAM_MIN_BYTES = 1 << 18  # smaller files cannot be that long (600 s of 6 kbit/s Opus is 450 kB): not opened to see


@dataclass(frozen=True)
class WaveStream:
    """A long file's prepared audio, read a block at a time when `blocks()` is consumed: what a
    Loaded holds instead of the array when the stage encodes as it reads (`AudioReader` with
    `stream_seconds`). Picklable: the file's name, not its samples. `len()` is libsndfile's length,
    converted; the exact count is known once it has been read."""

    path: str
    sample_rate: int
    start: float | None
    duration: float | None
    name: str
    length: int

    def __len__(self) -> int:
        return self.length

    def blocks(self) -> Iterator[np.ndarray]:
        return stream_file(self.path, self.sample_rate, self.start, self.duration, self.name)[1]


@dataclass
class Loaded:
    """An utterance with its prepared audio, or the reason it could not be read.

    `num_samples` is the wave's length; it stays when the wave is dropped (an engine that encodes
    in another process hands the sink a Loaded without its wave)."""

    utterance: Utterance
    index: int  # position in the job's input list
    wave: np.ndarray | WaveStream | None = None
    error: str | None = None
    num_samples: int = 0

    def __post_init__(self):
        if self.wave is not None:
            self.num_samples = len(self.wave)

    @property
    def ok(self) -> bool:
        return self.error is None


class AudioReader:
    """Turns utterances into prepared waves with `read` (a front end's `audio.Reading`:
    `read(source, sample_rate, start=..., duration=..., name=...)`); a plain callable stage. Audio
    inside a container is fetched first (`containers.fetch`). With `stream_seconds`, a local file
    longer than that is not read here: its Loaded holds a `WaveStream` (for stages that encode as
    they read, so memory does not grow with the file)."""

    def __init__(self, read: Callable[..., np.ndarray], stream_seconds: float | None = None):
        self.read = read
        self.stream_samples = None if stream_seconds is None else int(stream_seconds * read.sample_rate)

    def __call__(self, utterance: Utterance, index: int) -> Loaded:
        try:
            if self.stream_samples is not None and (stream := self._stream(utterance)) is not None:
                return Loaded(utterance, index, wave=stream)
            source, rate = _source(utterance)
            wave = self.read(source, rate, start=utterance.start, duration=utterance.duration, name=utterance.describe())
        except AudioError as error:
            return Loaded(utterance, index, error=error.reason)
        except Exception as error:  # noqa: BLE001 - one odd file (vanished, huge, odd rate) must not stop a corpus
            return Loaded(utterance, index, error=f"{type(error).__name__}: {error}")
        return Loaded(utterance, index, wave=wave)

    def _stream(self, utterance: Utterance) -> WaveStream | None:
        """A WaveStream for a plain local file longer than `stream_samples`, else None."""
        path = utterance.path
        if utterance.member is not None or is_url(path) or not os.path.isfile(path) \
                or os.path.getsize(path) < STREAM_MIN_BYTES:
            return None
        name = utterance.describe()
        length, _ = stream_file(path, self.read.sample_rate, utterance.start, utterance.duration, name)
        if length <= self.stream_samples:
            return None
        return WaveStream(path, self.read.sample_rate, utterance.start, utterance.duration, name, length)


def _source(utterance: Utterance):
    """(what `load_audio` reads, its sample rate if it is samples): the file, the fetched bytes of an
    object-store URL, or what a container member holds."""
    if utterance.member is not None:  # a container: a local file, or a URL read from its cached copy
        return fetch(str(cached_copy(utterance.path)) if is_url(utterance.path) else utterance.path, utterance.member)
    return (fetch_url(utterance.path) if is_url(utterance.path) else utterance.path), None


def read_ahead(
    work: Iterable[tuple[int, Utterance]],
    reader: AudioReader,
    workers: int = 4,
    prefetch: int = 64,
) -> Iterator[Loaded]:
    """`reader` over (index, utterance) pairs in `workers` threads; results in input order."""
    if workers <= 0:
        for index, utterance in work:
            yield reader(utterance, index)
        return
    pending: deque = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="speechtok-read") as pool:
        try:
            for index, utterance in work:
                pending.append(pool.submit(reader, utterance, index))
                if len(pending) >= prefetch:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # consumer stopped early (error, --strict): do not read the rest
            for future in pending:
                future.cancel()


def windows(loaded: Iterable[Loaded], max_samples: int) -> Iterator[list[Loaded]]:
    """Consecutive groups of utterances holding about `max_samples` samples of audio: the unit the
    encoder batches within (by length) and the writer appends."""
    group: list[Loaded] = []
    size = 0
    for item in loaded:
        group.append(item)
        size += item.num_samples
        if size >= max_samples:
            yield group
            group, size = [], 0
    if group:
        yield group
