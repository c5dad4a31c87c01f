"""`speechtok hubert-labels`: k-means targets for fairseq / torchaudio HuBERT training.

fairseq's recipe (examples/hubert/simple_kmeans) run as one resumable job:

    fit ONE k-means on the train split   -> OUT/tokenizer/       (reused if already there)
    tokenize every split with it         -> OUT/units/<split>/   (resumable Parquet)
    export fairseq labels                -> OUT/<split>.km, OUT/dict.km.txt
    check label counts vs audio lengths  -> OUT/labels.json, and a report

A k-means fitted separately on the valid split would number its clusters differently: the valid
targets would not mean what the train targets mean. The label rate to configure
(`task.label_rate`) is the encoder's frame rate: 100 for MFCC, 50 for SSL layers.

The check is fairseq's `verify_label_lengths`: an utterance whose audio duration and label
duration (labels / label_rate) differ by more than 0.1 s is reported. From a fairseq .tsv the
audio length is the sample count the .tsv records (what fairseq will use), at 16 kHz.
"""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pyarrow.compute as pc

from ..encoders import Encoder
from ..errors import FilesFailed, InputError
from ..runtime.device import batch_seconds as default_or
from ..tokenizer import TokenizerBase, load
from .export import export
from .fit import fit_kmeans_corpus
from .inputs import Utterance
from .lock import hold
from .manifest import TokenizedCorpus
from .runner import Engine
from .sinks import utterance_digest
from .store import atomic_write_text, differing_keys
from .tokenize import tokenize_corpus

TOLERANCE_SECONDS = 0.1  # fairseq's verify_label_lengths tol


@dataclass
class Mismatch:
    id: str
    audio_seconds: float
    label_seconds: float

    @property
    def difference(self) -> float:
        return self.audio_seconds - self.label_seconds


@dataclass
class LabelCheck:
    """Label counts against audio lengths for one split."""

    split: str
    utterances: int
    labels: int
    label_rate: float
    mismatches: list[Mismatch] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {**asdict(self), "mismatches": [asdict(m) for m in self.mismatches]}


def check_lengths(split: str, ids: Sequence[str], audio_seconds: Sequence[float], label_counts: Sequence[int],
                  label_rate: float, tolerance: float = TOLERANCE_SECONDS) -> LabelCheck:
    check = LabelCheck(split, len(ids), int(sum(label_counts)), label_rate)
    for uid, seconds, count in zip(ids, audio_seconds, label_counts):
        if abs(seconds - count / label_rate) > tolerance:
            check.mismatches.append(Mismatch(uid, float(seconds), count / label_rate))
    return check


def check_km_against_tsv(tsv: str | os.PathLike, km: str | os.PathLike, label_rate: float,
                         sample_rate: int = 16000, tolerance: float = TOLERANCE_SECONDS) -> LabelCheck:
    """A fairseq `.km` against its `.tsv` (`path<TAB>num_samples` lines after the root)."""
    tsv, km = Path(tsv), Path(km)
    entries = [line.split("\t") for line in tsv.read_text().splitlines()[1:] if line.strip()]
    try:
        ids = [os.path.splitext(e[0])[0] for e in entries]  # as corpus jobs name them
        samples = [int(e[1]) for e in entries]
    except (IndexError, ValueError):
        raise InputError(f"{tsv}: expected `path<TAB>num_samples` lines after the root line") from None
    counts = [len(line.split()) for line in km.read_text().splitlines()]
    if len(counts) != len(ids):
        raise InputError(f"{km} has {len(counts)} lines but {tsv} lists {len(ids)} utterances: "
                         "labels must be one line per utterance, in the .tsv's order")
    return check_lengths(km.stem, ids, [n / sample_rate for n in samples], counts, label_rate, tolerance)


class LabelsFailed(FilesFailed):
    """Some utterances could not be tokenized, so the labels would not line up with the manifest."""

    def __init__(self, split: str, errors: list[dict], out: Path):
        self.split, self.errors = split, errors
        super().__init__(f"{len(errors)} utterances of {split} failed (see {out}/errors*.jsonl); a .km must "
                         "have a line per manifest entry: fix or drop them and run the command again")


@dataclass
class LabelsReport:
    label_rate: float
    k: int
    stream: str
    tokenizer: str
    files: list[str]
    checks: list[LabelCheck]
    refitted: bool


FIT_RECORD = "fit.json"  # what the k-means in OUT/tokenizer was fitted on; written after it


def _fit_signature(utterances: Sequence[Utterance], encoder: Encoder, k: int, **options) -> dict:
    return {"encoder": {**encoder.to_dict(), "chunk_seconds": None}, "streams": list(encoder.streams), "k": k,
            "utterances": len(utterances), "inputs": utterance_digest(utterances), **options}


def _fitted_tokenizer(out: Path, signature: dict, device) -> TokenizerBase | None:
    """The tokenizer an earlier run fitted, if it was fitted on the same inputs the same way."""
    record = out / FIT_RECORD
    if not record.exists():
        return None
    earlier = json.loads(record.read_text())
    if earlier != signature:
        differ = ", ".join(differing_keys(earlier, signature))
        raise InputError(f"{out} holds labels of a k-means fitted differently ({differ} differ); "
                         "use a new output directory")
    # loaded by `load`, so an engine's workers can load it again (`load_args`)
    return load(out / "tokenizer", device=str(device))


def hubert_labels(
    splits: dict[str, Sequence[Utterance]],
    encoder: Encoder,
    k: int,
    out: str | os.PathLike,
    *,
    fit_split: str = "train",
    tsv: dict[str, Path | None] | None = None,
    percent: float | None = None,
    max_frames: int = 500_000,
    iters: int = 25,
    seed: int = 0,
    workers: int = 4,
    engine: Engine | None = None,
    stage: Callable[[str, int], object] | None = None,
) -> LabelsReport:
    """Fit on `splits[fit_split]`, label every split, export and check. `stage(label, sample_rate)`
    gives a progress context (with `start` / `advance`) per step, or None. `engine` runs the
    sampling pass and the labelling (default: this process)."""
    out = Path(out)
    if len(encoder.streams) != 1:
        raise InputError(f"HuBERT labels come from one stream; the encoder gives {', '.join(encoder.streams)}")
    if fit_split not in splits:
        raise InputError(f"no {fit_split} split to fit the k-means on")
    with hold(out):  # the label files are written by one job at a time
        return _label(splits, encoder, k, out, fit_split, tsv, percent, max_frames, iters, seed, workers, engine, stage)


def _label(splits, encoder, k, out: Path, fit_split, tsv, percent, max_frames, iters, seed, workers, engine,
           stage) -> LabelsReport:

    def progress(label):
        return stage(label, encoder.sample_rate) if stage else nullcontext()

    tok_dir = out / "tokenizer"
    signature = _fit_signature(splits[fit_split], encoder, k, percent=percent, max_frames=max_frames, iters=iters,
                               seed=seed)
    tok = _fitted_tokenizer(out, signature, encoder.device)
    refitted = tok is None
    if tok is None:
        with progress(f"fit k-means on {fit_split}") as meter:
            fit_kmeans_corpus(splits[fit_split], encoder, k, tok_dir, percent=percent, max_frames=max_frames,
                              iters=iters, seed=seed, workers=workers, strict=True, engine=engine,
                              on_start=getattr(meter, "start", None), on_progress=getattr(meter, "advance", None))
        atomic_write_text(out / FIT_RECORD, json.dumps(signature, indent=2) + "\n")
        tok = load(tok_dir, device=str(encoder.device))  # by `load`, so an engine's workers can load it again
    if engine is not None and engine.device is not None:
        tok.batch_seconds = default_or(None, engine.device)  # batches (and windows) for the device that encodes
    rate = float(tok.frame_rate)
    files, checks = [], []
    for split, utterances in splits.items():
        units_dir = out / "units" / split
        with progress(f"label {split}") as meter:
            result = tokenize_corpus(utterances, tok, units_dir, workers=workers, split=split, engine=engine,
                                     on_start=getattr(meter, "start", None), on_progress=getattr(meter, "advance", None))
        if result.errors:
            raise LabelsFailed(split, result.errors, units_dir)
        files += [str(p) for p in export(units_dir, "km", out, split=split)]
        manifest = (tsv or {}).get(split)
        if manifest is not None:
            checks.append(check_km_against_tsv(manifest, out / f"{split}.km", rate))
        else:
            ids, seconds, counts = [], [], []
            for table in TokenizedCorpus.open(units_dir).tables(["id", "num_samples", tok.streams[0]]):  # a shard at a time
                ids += table.column("id").to_pylist()
                seconds += [n / tok.sample_rate for n in table.column("num_samples").to_pylist()]
                counts += pc.list_value_length(table.column(tok.streams[0])).to_pylist()  # no codes as Python ints
            checks.append(check_lengths(split, ids, seconds, counts, rate))
    report = LabelsReport(rate, k, tok.streams[0], str(tok_dir), sorted(set(files)), checks, refitted)
    atomic_write_text(out / "labels.json", json.dumps({
        "label_rate": rate, "k": k, "stream": report.stream, "tokenizer": str(tok_dir), "fit_split": fit_split,
        "encoder": encoder.to_dict(), "files": report.files, "checks": [c.as_dict() for c in checks],
    }, indent=2) + "\n")
    return report


def name_splits(inputs: Sequence[str]) -> dict[str, str]:
    """Split name -> input: a .tsv is named after its file (train.tsv -> train, as fairseq names
    train.km); other inputs are train, valid, valid2, ... in order. Two splits of one name are refused."""
    from .inputs import split_name

    names: dict[str, str] = {}
    for given in inputs:
        name = split_name([given]) or ("train" if not names else "valid" if len(names) == 1 else f"valid{len(names) - 1}")
        if name in names:
            raise InputError(f"two splits are named {name!r}; give .tsv files with different names")
        names[name] = given
    return names
