"""How good are units: teacher quality against phone labels, and codebook statistics.

Teacher quality follows fairseq's `examples/hubert/measure_teacher_quality.py`: frames of every
utterance are paired (phone y, unit z) after bringing the units to the phones' frame rate and
cutting both to the shorter length; from the joint distribution p(y, z):

- phone purity   = sum_z max_y p(y, z)   (fairseq's "ref pur": the best phone guess per unit)
- cluster purity = sum_y max_z p(y, z)   ("hyp pur": the best unit guess per phone)
- PNMI           = I(y; z) / H(y)        ("MI/H(ref)")

in nats, with 0 log 0 = 0 (fairseq adds 1e-8 inside its logs; the difference is below 1e-6 on
real data).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np

from ..errors import InputError


def resample_units(units: Sequence[int], unit_rate: float, target_rate: float, length: int | None = None) -> np.ndarray:
    """Units at `unit_rate` read at `target_rate`: frame t takes the unit covering time
    t / target_rate (50 Hz units at 100 Hz: each unit twice, as fairseq's `--upsample 2`)."""
    units = np.asarray(units)
    n = int(np.floor(len(units) * target_rate / unit_rate + 1e-9)) if length is None else length
    index = np.floor(np.arange(n) * (unit_rate / target_rate) + 1e-9).astype(np.int64)
    return units[index[index < len(units)]]


@dataclass
class JointCounts:
    """Frame counts of (phone, unit) pairs over a corpus."""

    counts: np.ndarray  # [phones, units], int64
    phones: list[str]
    units: list[int]
    frame_difference: int = 0  # sum over utterances of |phone frames - unit frames| (at the phone rate)
    utterances: int = 0
    missing: int = 0  # utterances with phones but no units

    @classmethod
    def collect(cls, pairs: Iterable[tuple[Sequence[str], Sequence[int]]], missing: int = 0) -> JointCounts:
        """From (phone labels, units at the phone rate) per utterance; both cut to the shorter."""
        phone_ids: dict[str, int] = {}
        unit_ids: dict[int, int] = {}
        rows, cols = [], []
        difference = utterances = 0
        for phones, units in pairs:
            utterances += 1
            difference += abs(len(phones) - len(units))
            n = min(len(phones), len(units))
            rows.append(np.fromiter((phone_ids.setdefault(p, len(phone_ids)) for p in phones[:n]), np.int64, n))
            cols.append(np.fromiter((unit_ids.setdefault(int(u), len(unit_ids)) for u in units[:n]), np.int64, n))
        counts = np.zeros((len(phone_ids), len(unit_ids)), dtype=np.int64)
        if rows:
            np.add.at(counts, (np.concatenate(rows), np.concatenate(cols)), 1)
        # sorted labels, as fairseq orders them
        p_order = sorted(phone_ids, key=str)
        u_order = sorted(unit_ids)
        counts = counts[[phone_ids[p] for p in p_order]][:, [unit_ids[u] for u in u_order]]
        return cls(counts, p_order, u_order, difference, utterances, missing)


@dataclass
class TeacherQuality:
    phone_purity: float
    cluster_purity: float
    pnmi: float
    mutual_information: float  # nats
    phone_entropy: float  # H(phone), nats
    unit_entropy: float  # H(unit), nats
    frames: int
    phones: int
    units: int
    frame_difference: int
    utterances: int
    missing: int

    def as_dict(self) -> dict:
        return asdict(self)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def teacher_quality(joint: JointCounts) -> TeacherQuality:
    total = int(joint.counts.sum())
    if total == 0:
        raise InputError("no frames in common between the phone labels and the units")
    p = joint.counts / total
    p_phone, p_unit = p.sum(axis=1), p.sum(axis=0)
    nonzero = p > 0
    outer = np.outer(p_phone, p_unit)
    mi = float((p[nonzero] * np.log(p[nonzero] / outer[nonzero])).sum())
    h_phone = _entropy(p_phone)
    return TeacherQuality(
        phone_purity=float(p.max(axis=0).sum()),
        cluster_purity=float(p.max(axis=1).sum()),
        pnmi=mi / h_phone if h_phone > 0 else 0.0,
        mutual_information=mi,
        phone_entropy=h_phone,
        unit_entropy=_entropy(p_unit),
        frames=total,
        phones=len(joint.phones),
        units=len(joint.units),
        frame_difference=joint.frame_difference,
        utterances=joint.utterances,
        missing=joint.missing,
    )


@dataclass
class StreamStats:
    """Codebook statistics of one stream over a corpus."""

    stream: str
    k: int
    tokens: int
    seconds: float
    used: int  # distinct ids seen
    entropy_bits: float  # of the unigram distribution
    perplexity: float  # 2 ** entropy
    tokens_per_second: float
    nominal_bitrate: float  # tokens/s x log2 K, bit/s
    entropy_bitrate: float  # tokens/s x entropy, bit/s

    @property
    def usage(self) -> float:
        return self.used / self.k

    def as_dict(self) -> dict:
        return {**asdict(self), "usage": self.usage}


def code_counts(sequences: Iterable[np.ndarray], k: int) -> np.ndarray:
    """[k] how often each code occurs in `sequences`."""
    counts = np.zeros(k, dtype=np.int64)
    for seq in sequences:
        counts += np.bincount(np.asarray(seq, dtype=np.int64), minlength=k)[:k]
    return counts


def stream_stats(stream: str, sequences: Iterable[np.ndarray], k: int, seconds: float) -> StreamStats:
    return counts_stats(stream, code_counts(sequences, k), seconds)


def counts_stats(stream: str, counts: np.ndarray, seconds: float) -> StreamStats:
    """`StreamStats` of a stream whose codes occur `counts` times each."""
    k = len(counts)
    tokens = int(counts.sum())
    p = counts / max(tokens, 1)
    bits = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
    rate = tokens / seconds if seconds > 0 else 0.0
    return StreamStats(stream, k, tokens, seconds, int((counts > 0).sum()), bits, float(2.0 ** bits), rate,
                       rate * float(np.log2(k)), rate * bits)
