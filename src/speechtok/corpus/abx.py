"""`speechtok eval abx`: ABX phone discriminability of a corpus's features (`extract` output) or
units (`tokenize` output), so a user sees what quantization cost.

Units are compared through their k-means centroids (the tokenizer's, found from the corpus
manifest), or as one-hot vectors (`representation="onehot"`, and for codecs, whose codes have no
centroids here): with one-hot vectors the angular distance between two frames is 0 for the same
unit and maximal otherwise. The items and the scores come from `eval.abx` (ZeroSpeech's library).

    OUT/abx.json    within / across speaker error rates, items, utterances, what was compared
    OUT/abx.item    the items, in ZeroSpeech's format (a user can score other systems on them)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..eval.abx import abx_error_rates, build_items, write_item_file
from ..eval.alignments import read_alignments
from .arrow import column_arrays
from .evaluate import aligned_ids
from .manifest import TokenizedCorpus
from .store import atomic_write_text


def speakers_of(ids: list[str], speakers_file: str | os.PathLike | None) -> dict[str, str]:
    """uid -> speaker: from a `uid<TAB>speaker` file, else the id up to its first `-`
    (LibriSpeech's `1272-128104-0000` -> `1272`)."""
    if speakers_file is None:
        return {uid: uid.rsplit("/", 1)[-1].split("-", 1)[0] for uid in ids}
    table = {}
    for number, line in enumerate(Path(speakers_file).read_text().splitlines(), 1):
        if line.strip():
            fields = line.split("\t")
            if len(fields) != 2:
                raise InputError(f"{speakers_file}:{number}: expected `uid<TAB>speaker`")
            table[fields[0]] = fields[1].strip()
    missing = [uid for uid in ids if uid not in table]
    if missing:
        raise InputError(f"{speakers_file} names no speaker for {len(missing)} aligned utterances (first: {missing[0]})")
    return {uid: table[uid] for uid in ids}


def abx(corpus_dir: str | os.PathLike, alignments: str | os.PathLike, out: str | os.PathLike, stream: str | None = None,
        speakers_file: str | os.PathLike | None = None, phone_rate: float = 100.0, representation: str = "auto",
        keep_stress: bool = False, tier: str | None = None) -> dict:
    """Score the aligned utterances of `corpus_dir` (module docstring); writes OUT."""
    corpus = TokenizedCorpus.open(corpus_dir, kinds=("tokenize", "extract"))
    stream = corpus.stream(stream)
    phones = read_alignments(alignments, phone_rate, keep_stress, tier)
    ids = corpus.table(["id"]).column("id").to_pylist()
    matched = aligned_ids(ids, phones, alignments, corpus_dir)  # aligned uid -> corpus id
    embed, representation = _representation(corpus, stream, representation)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = {key: f"u{i:07d}" for i, key in enumerate(sorted(set(matched.values())))}  # any id as a file name
    wanted = set(names)
    with tempfile.TemporaryDirectory(dir=out, prefix=".features-") as features:
        frames = 0
        for table in corpus.tables(["id", stream]):
            for uid, values in zip(table.column("id").to_pylist(), column_arrays(table.column(stream))):
                if uid in wanted:
                    vectors = embed(values)
                    np.save(Path(features) / f"{names[uid]}.npy", vectors)
                    frames += len(vectors)
        speakers = speakers_of(list(matched), speakers_file)
        items = build_items({uid: phones[uid] for uid in matched}, speakers, phone_rate,
                            {uid: names[key] for uid, key in matched.items()})
        if not items:
            raise InputError(f"{alignments}: no phone with a phone before and after it (silences left out) in the "
                             f"{len(matched)} aligned utterances")
        item_file = write_item_file(items, out / "abx.item")
        with contextlib.redirect_stdout(io.StringIO()):  # the library prints its progress
            scores = abx_error_rates(features, item_file, corpus.frame_rate)
    result = {"corpus": str(corpus_dir), "kind": corpus.kind, "stream": stream, "representation": representation,
              "within_speaker": scores.get("within"), "across_speaker": scores.get("across"), "items": len(items),
              "utterances": len(matched), "speakers": len(set(speakers.values())), "frames": frames,
              "frame_rate": corpus.frame_rate, "alignments": str(alignments), "distance": "cosine, DTW",
              "library": "zerospeech-libriabx2"}
    atomic_write_text(out / "abx.json", json.dumps(result, indent=2) + "\n")
    return result


def _representation(corpus: TokenizedCorpus, stream: str, representation: str):
    """(frames -> [T, D] float32 vectors, its name) for `corpus`'s `stream`."""
    if corpus.kind == "extract":
        return (lambda values: np.asarray(values, dtype=np.float32)), "features"
    if corpus.dedup:
        raise InputError(f"{corpus.directory} was tokenized with --dedup: ABX needs a unit per frame")
    k = corpus.vocab_size(stream)
    if representation in ("auto", "centroids"):
        centroids = _centroids(corpus, stream)
        if centroids is not None:
            return (lambda codes: centroids[np.asarray(codes, dtype=np.int64)]), "centroids"
        if representation == "centroids":
            raise InputError(f"{corpus.directory}: the tokenizer that made it ({corpus.tokenizer_source}) has no k-means "
                             f"centroids for {stream} here; use --representation onehot")
    elif representation != "onehot":
        raise InputError(f"--representation must be auto, centroids or onehot, not {representation!r}")
    eye = np.eye(k, dtype=np.float32)
    return (lambda codes: eye[np.asarray(codes, dtype=np.int64)]), "onehot"


def _centroids(corpus: TokenizedCorpus, stream: str) -> np.ndarray | None:
    """The k-means centroids of `stream` from the tokenizer directory that made the corpus, if
    it is here and has them."""
    from ..tokenizer import load

    source = corpus.tokenizer_source
    if not source or not Path(source).is_dir():
        return None
    tokenizer = load(source)
    quantizer = getattr(tokenizer, "quantizers", {}).get(stream)
    return None if quantizer is None else quantizer.centroids.float().numpy()
