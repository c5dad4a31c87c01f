"""Stage 1 of a corpus job: read, resample and prepare audio ahead of the encoder, in threads.

libsndfile, soxr and numpy release the GIL, so threads decode in parallel while the main thread
keeps the device busy. At most `prefetch` utterances are held read-but-not-consumed, so memory does
not depend on the corpus size.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from ..audio import AudioError
from .containers import fetch
from .inputs import Utterance
from .remote import fetch_url, is_url


@dataclass
class Loaded:
    """An utterance with its prepared audio, or the reason it could not be read.

    `num_samples` is the wave's length; it stays when the wave is dropped (an engine that encodes
    in another process hands the sink a Loaded without its wave)."""

    utterance: Utterance
    index: int  # position in the job's input list
    wave: np.ndarray | None = None
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
    inside a container is fetched first (`containers.fetch`)."""

    def __init__(self, read: Callable[..., np.ndarray]):
        self.read = read

    def __call__(self, utterance: Utterance, index: int) -> Loaded:
        try:
            source, rate = _source(utterance)
            wave = self.read(source, rate, start=utterance.start, duration=utterance.duration, name=utterance.describe())
        except AudioError as error:
            return Loaded(utterance, index, error=error.reason)
        except Exception as error:  # noqa: BLE001 - one odd file (vanished, huge, odd rate) must not stop a corpus
            return Loaded(utterance, index, error=f"{type(error).__name__}: {error}")
        return Loaded(utterance, index, wave=wave)


def _source(utterance: Utterance):
    """(what `load_audio` reads, its sample rate if it is samples): the file, the fetched bytes of an
    object-store URL, or what a container member holds."""
    if utterance.member is not None:
        return fetch(utterance.path, utterance.member)
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
