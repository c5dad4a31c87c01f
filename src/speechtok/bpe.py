"""Byte-pair encoding of unit sequences with SentencePiece, reversible for K up to 65,536.

SentencePiece works on text, so each unit id becomes one character. SpeechBrain uses
`chr(token + 97)`, which for large K runs into control characters, unassigned code points and
surrogates (ids 55,199-57,246 land on U+D800-U+DFFF, which cannot even be encoded as UTF-8).
speechtok's mapping ("cjk-v1") uses CJK ideographs, which are printable, assigned since Unicode
3.1 and letters to every tokenizer, in this order:

    ids     0 .. 20,975 -> U+4E00 .. U+9FEF   (CJK Unified Ideographs)
    ids 20,976 .. 27,557 -> U+3400 .. U+4DB5   (Extension A)
    ids 27,558 .. 65,535 -> U+20000 .. U+29459 (Extension B)

Units of an utterance are joined without spaces (so merges can span units), SentencePiece's
normalisation is off (`identity`: NFKC would not touch these, but nothing should), every unit seen
in training is a piece (`character_coverage=1`), and unseen ones fall back to their UTF-8 bytes
(`byte_fallback`), so `decode(encode(units))` is always the units.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import FormatError, InputError

TYPE = "unit-bpe"
MAPPING = "cjk-v1"
_RANGES = [(0x4E00, 0x9FEF), (0x3400, 0x4DB5), (0x20000, 0x2A6D6)]  # inclusive
MAX_UNITS = 65536


def _code_points() -> np.ndarray:
    points = np.concatenate([np.arange(a, b + 1) for a, b in _RANGES])
    return points[:MAX_UNITS]


CODE_POINTS = _code_points()
_INVERSE = {int(c): i for i, c in enumerate(CODE_POINTS)}


def units_to_text(units: Sequence[int]) -> str:
    units = np.asarray(units, dtype=np.int64)
    if units.size and (units.min() < 0 or units.max() >= MAX_UNITS):
        raise InputError(f"unit ids must be in 0..{MAX_UNITS - 1}; got {units.min()}..{units.max()}")
    return "".join(map(chr, CODE_POINTS[units]))


def text_to_units(text: str) -> np.ndarray:
    try:
        return np.fromiter((_INVERSE[ord(c)] for c in text), dtype=np.int64, count=len(text))
    except KeyError as error:
        raise InputError(f"character U+{error.args[0]:04X} is not a unit of mapping {MAPPING}") from None


class UnitBPE:
    """A SentencePiece BPE model over unit sequences of one stream; saved as `bpe.model` +
    `bpe.json` (stream, K, mapping) in a directory."""

    def __init__(self, model_proto: bytes, stream: str, k: int):
        import sentencepiece as spm

        self.processor = spm.SentencePieceProcessor(model_proto=model_proto)
        self.model_proto, self.stream, self.k = model_proto, stream, int(k)

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    @classmethod
    def train(cls, sequences: Iterable[Sequence[int]], k: int, vocab_size: int, stream: str = "units",
              max_sentence_length: int = 1 << 20, seed_sentences: int = 1_000_000) -> UnitBPE:
        """Fit BPE with `vocab_size` pieces (including 3 specials and 256 byte pieces) on unit
        sequences with ids < `k`."""
        import sentencepiece as spm

        if not 0 < k <= MAX_UNITS:
            raise InputError(f"K={k}: unit BPE supports 1..{MAX_UNITS} units")
        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "units.txt"
            seen: set[int] = set()
            lines = 0
            with corpus.open("w", encoding="utf-8") as f:
                for seq in sequences:
                    seq = np.asarray(seq, dtype=np.int64)
                    if seq.size == 0:
                        continue
                    if seq.max() >= k or seq.min() < 0:
                        raise InputError(f"unit ids {seq.min()}..{seq.max()} are outside 0..{k - 1}")
                    seen.update(np.unique(seq).tolist())
                    f.write(units_to_text(seq) + "\n")
                    lines += 1
            if lines == 0:
                raise InputError("no unit sequences to train BPE on")
            needed = len(seen) + 256 + 3
            if vocab_size < needed:
                raise InputError(f"--vocab-size {vocab_size} is too small: the corpus has {len(seen)} distinct "
                                 f"units, and each is a piece, plus 256 byte pieces and 3 specials "
                                 f"(at least {needed}; merges come on top)")
            model = Path(tmp) / "bpe"
            try:
                spm.SentencePieceTrainer.train(
                    input=str(corpus), model_prefix=str(model), model_type="bpe", vocab_size=vocab_size,
                    character_coverage=1.0, byte_fallback=True, normalization_rule_name="identity",
                    split_by_whitespace=False, split_by_unicode_script=False, split_by_number=False,
                    add_dummy_prefix=False, remove_extra_whitespaces=False, max_sentence_length=max_sentence_length,
                    input_sentence_size=seed_sentences, shuffle_input_sentence=True,
                    bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0, hard_vocab_limit=False,
                    max_sentencepiece_length=64, num_threads=os.cpu_count() or 1, minloglevel=2,
                )
            except RuntimeError as error:
                raise InputError(f"SentencePiece could not train: {error}") from None
            return cls((model.with_suffix(".model")).read_bytes(), stream, k)

    def encode(self, units: Sequence[int]) -> np.ndarray:
        """Unit ids -> BPE piece ids."""
        return np.asarray(self.processor.encode(units_to_text(units), out_type=int), dtype=np.int64)

    def decode(self, ids: Sequence[int]) -> np.ndarray:
        """BPE piece ids -> the unit ids they came from."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InputError(f"BPE piece ids must be in 0..{self.vocab_size - 1}; got {bad[:5]}")
        return text_to_units(self.processor.decode(ids))

    def pieces(self, units: Sequence[int]) -> list[np.ndarray]:
        """The units each piece of `encode(units)` stands for (to see what BPE merged). A unit
        that fell back to bytes (3-4 byte pieces) is one entry."""
        out: list[np.ndarray] = []
        pending: list[int] = []  # byte pieces: only whole UTF-8 sequences decode to a unit
        for i in self.encode(units):
            if self.processor.is_byte(int(i)):
                pending.append(int(i))
                continue
            if pending:
                out += [np.array([u]) for u in self.decode(pending)]
                pending = []
            out.append(self.decode([i]))
        out += [np.array([u]) for u in self.decode(pending)] if pending else []
        return out

    def to_dict(self) -> dict:
        return {"type": TYPE, "stream": self.stream, "k": self.k, "mapping": MAPPING, "vocab_size": self.vocab_size,
                "sha256": hashlib.sha256(self.model_proto).hexdigest()}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "bpe.model").write_bytes(self.model_proto)
        (directory / "bpe.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> UnitBPE:
        directory = Path(directory)
        try:
            meta = json.loads((directory / "bpe.json").read_text())
            proto = (directory / "bpe.model").read_bytes()
        except (OSError, json.JSONDecodeError) as error:
            raise FormatError(f"{directory}: not a unit BPE directory (bpe.json + bpe.model): {error}") from None
        if meta.get("mapping") != MAPPING:
            raise FormatError(f"{directory}: unit-to-character mapping {meta.get('mapping')!r} is not {MAPPING!r}")
        return cls(proto, meta["stream"], meta["k"])

    config = to_dict  # the names before to_dict / from_pretrained
    load = from_pretrained
