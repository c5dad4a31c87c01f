"""What training reads, and how it batches it, as fairseq's `HubertDataset` does.

A split is a fairseq manifest (`split.tsv`: a root line, then `path<TAB>num_samples`) and either
its labels for pre-training (`LABEL_DIR/split.km`, one line of label ids per manifest entry;
`dict.km.txt`, a line per class; the label rate from `labels.json` as `speechtok hubert-labels`
writes it, or given) or its transcripts for CTC (`split.ltr`: letters separated by spaces, `|`
ending each word, as fairseq's `wav2vec_manifest` / `libri_labels` write them; or `split.wrd`: words).

Batches (fairseq's `batch_by_size` over size-sorted utterances, `pad_audio=False`): utterances
shorter than `min_samples` are left out; a batch holds utterances of similar length whose count x
longest (cropped) length stays within `max_batch_samples`; every utterance of a batch is cropped to the
batch's shortest (at most `max_samples`) from a random start, and its labels from the matching
label frame (`round(start x label_rate / sample_rate)`), so no batch is padded. CTC batches are
not cropped (`collate_padded`): utterances are zero-padded to the batch's longest.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..audio import load_audio
from ..corpus.inputs import from_tsv
from ..errors import InputError, NotFoundError

SAMPLE_RATE = 16000
LABEL_TOLERANCE = 0.1  # seconds between audio and label durations (fairseq's verify_label_lengths)
MAX_OFF_FRACTION = 0.01  # more utterances off than this: the labels are refused


class Split(Protocol):
    """What batching needs of a split."""

    name: str
    paths: list[str]
    sizes: np.ndarray  # samples per utterance, as the manifest records them


@dataclass
class LabelledSplit:
    """The utterances of one split with their labels."""

    name: str
    paths: list[str]
    sizes: np.ndarray  # samples per utterance, as the manifest records them
    labels: list[np.ndarray]  # raw label ids per utterance, at `label_rate`
    num_classes: int
    label_rate: float

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def hours(self) -> float:
        return float(self.sizes.sum()) / SAMPLE_RATE / 3600


def read_split(tsv: str | os.PathLike, label_dir: str | os.PathLike, label_rate: float | None = None) -> LabelledSplit:
    """A manifest and its labels, checked: one label line per entry, ids below the dictionary's
    size, and a known label rate."""
    tsv, label_dir = Path(tsv), Path(label_dir)
    name = tsv.stem
    km, dictionary = label_dir / f"{name}.km", label_dir / "dict.km.txt"
    for path in (km, dictionary):
        if not path.exists():
            raise NotFoundError(f"{path}: no such file (labels come from `speechtok hubert-labels` into {label_dir})")
    paths, sizes, lines = _manifest_and_lines(tsv, km, "labels")
    labels = [np.array(line.split(), dtype=np.int64) for line in lines]
    num_classes = sum(1 for line in dictionary.read_text().splitlines() if line.strip())
    top = max((int(x.max()) for x in labels if len(x)), default=-1)
    if top >= num_classes:
        raise InputError(f"{km}: label {top} is not below the {num_classes} classes of {dictionary}")
    if label_rate is None:
        record = label_dir / "labels.json"
        if not record.exists():
            raise InputError(f"{label_dir} has no labels.json to say its label rate: give --label-rate (100 for MFCC "
                             "labels, 50 for SSL ones)")
        label_rate = float(json.loads(record.read_text())["label_rate"])
    # fairseq's verify_label_lengths (0.1 s); a few odd utterances are let through as fairseq lets
    # them, a wrong label rate (every one off) is not
    off = [i for i, (n, x) in enumerate(zip(sizes, labels)) if abs(n / SAMPLE_RATE - len(x) / label_rate) > LABEL_TOLERANCE]
    if len(off) > MAX_OFF_FRACTION * len(paths):
        i = off[0]
        raise InputError(f"{km}: {len(off)} of {len(paths)} utterances have labels whose length does not match their "
                         f"audio at {label_rate:g} labels/s (first: {paths[i]}, {sizes[i] / SAMPLE_RATE:.2f} s of audio, "
                         f"{len(labels[i])} labels); a wrong --label-rate, or labels of another manifest?")
    return LabelledSplit(name, paths, sizes, labels, num_classes, float(label_rate))


@dataclass
class TranscribedSplit:
    """The utterances of one split with their transcripts, as letter symbols (`|` ends a word)."""

    name: str
    paths: list[str]
    sizes: np.ndarray
    letters: list[list[str]]

    def __len__(self) -> int:
        return len(self.paths)


def words_of(letters: list[str]) -> str:
    """The words a letter sequence spells (`|` ends a word), separated by single spaces."""
    return " ".join("".join(letters).replace("|", " ").split())


def read_transcribed(tsv: str | os.PathLike, text: str | os.PathLike) -> TranscribedSplit:
    """A manifest and its transcripts: a fairseq `.ltr` file (letters and `|`, space-separated)
    or a `.wrd` file (words, turned into letters as fairseq's `libri_labels.py` does)."""
    tsv, text = Path(tsv), Path(text)
    paths, sizes, lines = _manifest_and_lines(tsv, text, "transcripts")
    if text.suffix == ".ltr":
        letters = [line.split() for line in lines]
    else:  # words: each letter, "|" after every word
        letters = [[c for word in line.split() for c in (*word, "|")] for line in lines]
    empty = [i for i, x in enumerate(letters) if not x]
    if empty:
        raise InputError(f"{text}: line {empty[0] + 1} is empty ({len(empty)} empty transcripts); CTC needs text")
    return TranscribedSplit(tsv.stem, paths, sizes, letters)


def _manifest_and_lines(tsv: Path, companion: Path, what: str) -> tuple[list[str], np.ndarray, list[str]]:
    """(audio paths, samples per utterance, lines of `companion`) of a fairseq manifest and the
    file holding its `what`, one line per utterance."""
    for path in (tsv, companion):
        if not path.exists():
            raise NotFoundError(f"{path}: no such file")
    paths, sizes = _manifest(tsv)
    lines = companion.read_text().splitlines()
    if len(lines) != len(paths):
        raise InputError(f"{companion} has {len(lines)} lines but {tsv} lists {len(paths)} utterances: {what} must be "
                         "one line per utterance, in the manifest's order")
    return paths, sizes, lines


def _manifest(tsv: Path) -> tuple[list[str], np.ndarray]:
    """(audio paths, samples per utterance) of a fairseq manifest."""
    paths = [u.path for u in from_tsv(tsv)]
    try:
        sizes = np.array([int(line.split("\t")[1]) for line in tsv.read_text().splitlines()[1:] if line.strip()])
    except (IndexError, ValueError):
        raise InputError(f"{tsv}: expected `path<TAB>num_samples` lines after the root line") from None
    return paths, sizes


def batch_plan(sizes: np.ndarray, max_batch_samples: int, max_samples: int, min_samples: int,
               rng: np.random.Generator) -> list[list[int]]:
    """Batches of utterance indices for one epoch, in a random order (module docstring)."""
    keep = np.flatnonzero(sizes >= min_samples)
    order = keep[np.lexsort((rng.permutation(len(keep)), sizes[keep]))]  # by size, ties in random order
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = min(int(sizes[index]), max_samples)  # sizes ascend: the newest is the longest
        if current and longest * (len(current) + 1) > max_batch_samples:  # fairseq's count x longest
            batches.append(current)
            current = []
        current.append(int(index))
    if current:
        batches.append(current)
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(split: LabelledSplit, indices: list[int], max_samples: int, rng: np.random.Generator) -> dict:
    """The batch: every utterance cropped to the shortest (at most `max_samples`) from a random
    start, labels cut at the matching frames. {input_values [B, S], labels [B, L] (padded with
    -1), label_lengths [B], seconds}."""
    size = min(min(int(split.sizes[i]) for i in indices), max_samples)
    per_sample = split.label_rate / SAMPLE_RATE
    waves, labels = [], []
    for i in indices:
        wave = load_audio(split.paths[i], SAMPLE_RATE)
        start = int(rng.integers(0, len(wave) - size + 1)) if len(wave) > size else 0
        waves.append(wave[start : start + size])
        first = int(round(start * per_sample))
        labels.append(split.labels[i][first : first + int(round(size * per_sample))])
    length = max(len(x) for x in labels)
    padded = np.full((len(indices), length), -1, dtype=np.int64)
    for row, x in zip(padded, labels):
        row[: len(x)] = x
    if any(len(w) < size for w in waves):  # the manifest said more samples than the file has
        short = next(split.paths[i] for i, w in zip(indices, waves) if len(w) < size)
        raise InputError(f"{short}: has fewer samples than the manifest records; rebuild the manifest")
    return {"input_values": torch.from_numpy(np.stack(waves)), "labels": torch.from_numpy(padded),
            "label_lengths": torch.tensor([len(x) for x in labels]), "seconds": size * len(indices) / SAMPLE_RATE}


def collate_padded(split: TranscribedSplit, indices: list[int], encode, normalize) -> dict:
    """The batch of whole utterances, zero-padded to the longest: {input_values [B, S],
    sample_lengths [B], labels [B, L] (padded with -100), label_lengths [B], seconds}.
    `encode(letters) -> ids`; `normalize(wave) -> wave` (per utterance, before padding) or None."""
    waves = []
    for i in indices:
        wave = load_audio(split.paths[i], SAMPLE_RATE)
        waves.append(normalize(wave) if normalize is not None else wave)
    targets = [encode(split.letters[i]) for i in indices]
    values = np.zeros((len(waves), max(len(w) for w in waves)), dtype=np.float32)
    labels = np.full((len(targets), max(len(t) for t in targets)), -100, dtype=np.int64)
    for row, wave in zip(values, waves):
        row[: len(wave)] = wave
    for row, ids in zip(labels, targets):
        row[: len(ids)] = ids
    return {"input_values": torch.from_numpy(values), "sample_lengths": torch.tensor([len(w) for w in waves]),
            "labels": torch.from_numpy(labels), "label_lengths": torch.tensor([len(t) for t in targets]),
            "seconds": sum(len(w) for w in waves) / SAMPLE_RATE}
