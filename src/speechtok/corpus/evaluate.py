"""`speechtok eval`: unit quality of a tokenized corpus.

- `purity`: phone purity, cluster purity and PNMI against frame-level phone labels (see
  `speechtok.metrics`); units are expanded by their durations when the corpus was deduplicated
  and brought to the phones' frame rate. Utterances are matched by id, or by the id's last path
  component (fairseq names alignments by file stem).
- `stats`: per stream, codebook usage, unigram entropy / perplexity, tokens per second and
  bitrate (nominal and entropy-based).
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import pyarrow.compute as pc

from ..errors import InputError
from ..eval.alignments import read_alignments
from ..eval.metrics import JointCounts, StreamStats, TeacherQuality, code_counts, counts_stats, resample_units, teacher_quality
from .manifest import TokenizedCorpus


def purity(out: str | os.PathLike, alignments: str | os.PathLike, stream: str | None = None,
           phone_rate: float = 100.0, keep_stress: bool = False, tier: str | None = None) -> TeacherQuality:
    return teacher_quality(joint_counts(out, alignments, stream, phone_rate, keep_stress, tier))


def joint_counts(out: str | os.PathLike, alignments: str | os.PathLike, stream: str | None = None,
                 phone_rate: float = 100.0, keep_stress: bool = False, tier: str | None = None) -> JointCounts:
    """(phone, unit) frame counts of the aligned utterances of a tokenized corpus."""
    corpus = TokenizedCorpus.open(out)
    stream = corpus.stream(stream)
    phones = read_alignments(alignments, phone_rate, keep_stress, tier)
    ids = corpus.table(["id"]).column("id").to_pylist()
    units = dict(zip(ids, corpus.sequences(stream, expand=True)))  # one unit per frame again
    matched = aligned_ids(ids, phones, alignments, out)
    pairs = [(phones[uid], resample_units(units[key], corpus.frame_rate, phone_rate)) for uid, key in matched.items()]
    return JointCounts.collect(pairs, len(phones) - len(matched))


def aligned_ids(ids: list[str], phones: dict[str, list[str]], alignments, out) -> dict[str, str]:
    """aligned uid -> the corpus id it is: the same id, or the same last path component (an
    MFA TextGrid directory names files by their relative path). Refuses when none match."""
    present = set(ids)
    by_stem: dict[str, str] = {}
    for uid in ids:
        by_stem.setdefault(uid.rsplit("/", 1)[-1], uid)
    matched = {}
    for uid in phones:
        key = uid if uid in present else by_stem.get(uid.rsplit("/", 1)[-1])
        if key is not None:
            matched[uid] = key
    if not matched:
        raise InputError(f"none of the {len(phones)} aligned utterances of {alignments} is in {out} "
                          f"(ids there look like {ids[0] if ids else None!r})")
    return matched


def stats(out: str | os.PathLike) -> list[StreamStats]:
    """Codebook statistics per stream, read a shard and a column at a time (memory: one shard's
    codes of one stream, whatever the corpus size)."""
    corpus = TokenizedCorpus.open(out)
    samples = sum(int(pc.sum(t.column("num_samples")).as_py() or 0) for t in corpus.tables(["num_samples"]))
    seconds = samples / corpus.sample_rate

    return [counts_stats(s, code_counts_of(corpus, s), seconds) for s in corpus.streams]


def code_counts_of(corpus: TokenizedCorpus, stream: str) -> np.ndarray:
    """[K] how often each code of `stream` occurs, read a shard at a time."""
    def codes() -> Iterator[np.ndarray]:  # every code of a shard as one flat array
        for table in corpus.tables([stream]):
            yield pc.list_flatten(table.column(stream)).to_numpy()

    return code_counts(codes(), corpus.vocab_size(stream))
