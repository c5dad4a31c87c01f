"""Units: the discrete tokens of one utterance, and the views other tools expect of them.

`codes` always hold raw ids (0..K-1) per stream. Offsets (SpeechBrain's, the unit vocoder's) and
text forms (fairseq/GSLM, SpeechGPT, SpiritLM) are computed on request and never stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np

from .errors import InputError, UnknownNameError

_LAYER_STREAM = re.compile(r"^L(\d+)$")

# name -> (prefix, suffix, separator) of each token in a text form.
TEXT_STYLES = {
    "fairseq": ("", "", " "),  # GSLM / fairseq .km lines: "12 7 93"
    "speechgpt": ("<", ">", ""),  # "<12><7><93>"
    "spiritlm": ("[Hu", "]", ""),  # "[Hu12][Hu7][Hu93]"
}


def layer_of(stream: str) -> int:
    """The SSL layer number of a stream named `L<n>`."""
    match = _LAYER_STREAM.match(stream)
    if match is None:
        raise InputError(f"stream {stream!r} is not an SSL layer stream (named L<n>)")
    return int(match.group(1))


@dataclass(frozen=True, eq=False)
class Units:
    """Tokens of one utterance.

    codes:        [T, Q] int64 raw ids, one column per stream.
    streams:      the stream names, e.g. ("L7", "L23"), ("mfcc",), ("q0", ..., "q11").
    frame_rate:   frames per second of `codes` before deduplication.
    vocab_sizes:  K of each stream.
    durations:    [T] frames each row spans, once deduplicated; None before.
    num_samples / sample_rate: the audio the codes came from, where known.
    codebooks:    per stream, the [K, D] centroids, where known (for `embeddings`).
    """

    codes: np.ndarray
    streams: tuple[str, ...]
    frame_rate: float
    vocab_sizes: tuple[int, ...]
    durations: np.ndarray | None = None
    num_samples: int | None = None
    sample_rate: int | None = None
    codebooks: tuple[np.ndarray, ...] | None = field(default=None, repr=False)

    def __post_init__(self):
        codes = np.asarray(self.codes, dtype=np.int64)
        if codes.ndim == 1:
            codes = codes[:, None]
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "streams", tuple(self.streams))
        object.__setattr__(self, "vocab_sizes", tuple(int(k) for k in self.vocab_sizes))
        if codes.ndim != 2 or codes.shape[1] != len(self.streams):
            raise InputError(f"codes {codes.shape} do not match streams {self.streams}")
        if len(self.vocab_sizes) != len(self.streams):
            raise InputError("one vocab size per stream is needed")
        if self.durations is not None:
            durations = np.asarray(self.durations, dtype=np.int64)
            if durations.shape != (len(codes),):
                raise InputError(f"durations {durations.shape} do not match {len(codes)} frames")
            object.__setattr__(self, "durations", durations)

    def __len__(self) -> int:
        return len(self.codes)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Units):
            return NotImplemented
        same_durations = (self.durations is None and other.durations is None) or (
            self.durations is not None
            and other.durations is not None
            and np.array_equal(self.durations, other.durations)
        )
        return (
            self.streams == other.streams
            and self.vocab_sizes == other.vocab_sizes
            and self.frame_rate == other.frame_rate
            and np.array_equal(self.codes, other.codes)
            and same_durations
        )

    @property
    def duration_seconds(self) -> float:
        frames = len(self) if self.durations is None else int(self.durations.sum())
        return frames / self.frame_rate

    def stream(self, name: str) -> np.ndarray:
        """The [T] raw ids of one stream."""
        return self.codes[:, self._index(name)]

    def select(self, *names: str) -> Units:
        """These streams only, in this order."""
        idx = [self._index(n) for n in names]
        return replace(
            self,
            codes=self.codes[:, idx],
            streams=tuple(names),
            vocab_sizes=tuple(self.vocab_sizes[i] for i in idx),
            codebooks=None if self.codebooks is None else tuple(self.codebooks[i] for i in idx),
        )

    def dedup(self) -> Units:
        """Merge runs of identical rows; `durations` holds each run's length in frames.

        With several streams a row repeats only when every stream repeats; to deduplicate
        streams independently (as SpeechBrain does), `select` one stream first.
        """
        if len(self) == 0:
            return replace(self, durations=np.zeros(0, dtype=np.int64))
        starts = np.ones(len(self), dtype=bool)
        starts[1:] = (self.codes[1:] != self.codes[:-1]).any(axis=1)
        weights = np.ones(len(self), dtype=np.int64) if self.durations is None else self.durations
        run_ids = np.cumsum(starts) - 1
        durations = np.bincount(run_ids, weights=weights).astype(np.int64)
        return replace(self, codes=self.codes[starts], durations=durations)

    def speechbrain_tokens(self) -> np.ndarray:
        """[T, Q] ids as SpeechBrain's DiscreteSSL returns its processed tokens:
        token + layer_number * K + 1 (0 is padding)."""
        offsets = [layer_of(s) * k + 1 for s, k in zip(self.streams, self.vocab_sizes)]
        return self.codes + np.asarray(offsets, dtype=np.int64)

    def vocoder_tokens(self, layers: Sequence[int]) -> np.ndarray:
        """[T, len(layers)] input of a multi-layer unit vocoder: token + i*K + 1 in the column i of
        the vocoder's layer list; columns of layers these units lack are 0 (the dropped-layer id)."""
        sizes = set(self.vocab_sizes)
        if len(sizes) != 1:
            raise InputError(f"vocoder offsets need one K for all streams, got {self.vocab_sizes}")
        k = sizes.pop()
        out = np.zeros((len(self), len(layers)), dtype=np.int64)
        for col, stream in enumerate(self.streams):
            layer = layer_of(stream)
            if layer not in layers:
                raise InputError(f"layer {layer} is not one of the vocoder's layers {list(layers)}")
            position = list(layers).index(layer)
            out[:, position] = self.codes[:, col] + position * k + 1
        return out

    def to_text(self, style: str = "fairseq", stream: str | None = None) -> str:
        """One stream as text: "12 7 93" (fairseq), "<12><7><93>" (speechgpt), "[Hu12][Hu7]" (spiritlm)."""
        if stream is None:
            if len(self.streams) != 1:
                raise InputError(f"these units have streams {self.streams}: name one with stream=")
            stream = self.streams[0]
        return ids_to_text(self.stream(stream), style)

    def embeddings(self) -> np.ndarray:
        """[T, Q, D] centroid of each code (SpeechBrain's `emb`); needs the codebooks."""
        if self.codebooks is None:
            raise InputError("these units carry no codebooks; encode them with a Tokenizer")
        dims = {c.shape[1] for c in self.codebooks}
        if len(dims) != 1:
            raise InputError(f"streams have centroids of different sizes {sorted(dims)}")
        return np.stack([c[self.codes[:, i]] for i, c in enumerate(self.codebooks)], axis=1)

    def to_row(self, dedup: bool = False) -> dict[str, np.ndarray]:
        """This utterance's columns in a tokenized corpus: the [T] raw ids of each stream and,
        with `dedup` (each stream deduplicated on its own, as SpeechBrain does) or for units that
        carry durations, `<stream>_durations`."""
        row: dict[str, np.ndarray] = {}
        for stream in self.streams:
            one = self.select(stream)
            if dedup:
                one = one.dedup()
            if one.durations is not None:
                row[f"{stream}_durations"] = one.durations
            row[stream] = one.codes[:, 0]
        return row

    @classmethod
    def from_row(cls, row: Mapping, streams: Sequence[str], frame_rate: float, vocab_sizes: Sequence[int],
                 sample_rate: int | None = None) -> Units:
        """The Units of a corpus row (`to_row`'s columns, and `num_samples` if present). Rows whose
        streams were deduplicated apart have different durations per stream and are refused."""
        runs = [np.asarray(row[f"{s}_durations"], dtype=np.int64) for s in streams
                if row.get(f"{s}_durations") is not None]
        if runs and (len(runs) != len(streams) or any(not np.array_equal(runs[0], r) for r in runs[1:])):
            raise InputError(f"streams {list(streams)} were deduplicated on their own; read them one at a time")
        codes = np.stack([np.asarray(row[s], dtype=np.int64) for s in streams], axis=1)
        return cls(codes=codes, streams=tuple(streams), frame_rate=frame_rate, vocab_sizes=tuple(vocab_sizes),
                   durations=runs[0] if runs else None, num_samples=row.get("num_samples"), sample_rate=sample_rate)

    def _index(self, name: str) -> int:
        try:
            return self.streams.index(name)
        except ValueError:
            raise UnknownNameError(f"no stream {name!r}; these units have {self.streams}") from None


def ids_to_text(ids: Sequence[int], style: str = "fairseq") -> str:
    """Raw ids as text in a `TEXT_STYLES` style (what `Units.to_text` gives for one stream)."""
    if style not in TEXT_STYLES:
        raise UnknownNameError(f"unknown text style {style!r}; choose from {', '.join(TEXT_STYLES)}")
    prefix, suffix, sep = TEXT_STYLES[style]
    return sep.join(f"{prefix}{int(t)}{suffix}" for t in ids)


def parse_text(text: str, style: str = "fairseq") -> np.ndarray:
    """Inverse of `Units.to_text` for one stream: the raw ids."""
    if style not in TEXT_STYLES:
        raise InputError(f"unknown text style {style!r}; choose from {sorted(TEXT_STYLES)}")
    prefix, suffix, _ = TEXT_STYLES[style]
    pattern = re.escape(prefix) + r"(\d+)" + re.escape(suffix)
    return np.asarray([int(m) for m in re.findall(pattern, text)], dtype=np.int64)
