"""Cut utterances into chunks and group the chunks into length-bucketed batches.

Long audio is encoded as independent chunks of at most `chunk_samples` (fairseq's `max_chunk`
behaviour) so that memory does not grow with file length. Chunks from all utterances are then
sorted by length and packed into batches holding at most `batch_seconds` of padded audio, so that
padding stays small. Encoders make results independent of batching, so the grouping is free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

import numpy as np

R = TypeVar("R")


@dataclass(frozen=True)
class Chunk:
    utterance: int  # index of the utterance in the input list
    index: int  # position of this chunk in its utterance
    wave: np.ndarray


def split_chunks(waves: Sequence[np.ndarray], chunk_samples: int | None, min_samples: int) -> list[Chunk]:
    """Chunks of every utterance in order. A trailing chunk too short to give a frame is dropped
    (it would contribute no frames)."""
    chunks = []
    for u, wave in enumerate(waves):
        step = chunk_samples or max(len(wave), 1)
        for i, start in enumerate(range(0, len(wave), step)):
            piece = wave[start : start + step]
            if len(piece) >= min_samples:
                chunks.append(Chunk(u, i, piece))
    return chunks


def bucket(chunks: Sequence[Chunk], max_batch_samples: int, max_batch_size: int | None = None) -> list[list[Chunk]]:
    """Batches of similar length: sorted by length, each batch's padded size
    (count x longest) within `max_batch_samples`. A single chunk longer than the budget gets a batch
    of its own."""
    order = sorted(chunks, key=lambda c: len(c.wave), reverse=True)
    batches: list[list[Chunk]] = []
    current: list[Chunk] = []
    for chunk in order:
        longest = len(current[0].wave) if current else len(chunk.wave)
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (full or longest * (len(current) + 1) > max_batch_samples):
            batches.append(current)
            current = []
        current.append(chunk)
    if current:
        batches.append(current)
    return batches


def run_batched(
    waves: Sequence[np.ndarray],
    forward: Callable[[list[np.ndarray]], list[R]],
    chunk_samples: int | None,
    min_samples: int,
    max_batch_samples: int,
    max_batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[list[R]]:
    """Apply `forward` to batches of chunks; return, per utterance, its chunks' results in order.

    `forward` maps a list of waves to one result each (e.g. features, or codes); results are kept
    per chunk, so memory holds only what `forward` returns, never a whole corpus of features.
    `progress`, if given, is called with the number of samples each batch covered.
    """
    results: list[dict[int, R]] = [dict() for _ in waves]
    chunks = split_chunks(waves, chunk_samples, min_samples)
    for batch in bucket(chunks, max_batch_samples, max_batch_size):
        outputs = forward([c.wave for c in batch])
        for chunk, out in zip(batch, outputs):
            results[chunk.utterance][chunk.index] = out
        if progress is not None:
            progress(sum(len(c.wave) for c in batch))
    return [[r[i] for i in sorted(r)] for r in results]

