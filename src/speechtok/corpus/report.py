"""`speechtok report`: what each directory given holds, gathered for `eval.report.render`.

    eval resynth directories (eval.json)    resynthesis metrics, audio
    eval abx directories (abx.json)         ABX error rates
    tokenized corpora (tokenize output)     codebook usage; with alignments, teacher quality
                                            (PNMI) and the unit-phone counts
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from ..errors import InputError
from ..eval.metrics import teacher_quality
from ..eval.report import AbxRun, Evaluation, UnitsRun, render
from .evaluate import code_counts_of, joint_counts, stats
from .manifest import TokenizedCorpus
from .resynth import json_safe
from .store import atomic_write_text


def build_report(directories: Sequence[str | os.PathLike], out: str | os.PathLike,
                 alignments: str | os.PathLike | None = None, max_rows: int = 20, phone_rate: float = 100.0) -> Path:
    if not directories:
        raise InputError("give directories written by `speechtok eval resynth`, `eval abx` or `tokenize`")
    evaluations, units, abx = [], [], []
    for directory in map(Path, directories):
        if (directory / "eval.json").exists():
            evaluations.append(Evaluation.read(directory))
        elif (directory / "abx.json").exists():
            abx.append(AbxRun(directory.name, json.loads((directory / "abx.json").read_text())))
        elif any(directory.glob("manifest*.json")):
            units.append(_units(directory, alignments, phone_rate))
        else:
            raise InputError(f"{directory}: not written by `speechtok eval resynth` (eval.json), `eval abx` (abx.json) "
                             "or `tokenize` (manifest.json)")
    page, numbers, table = render(evaluations, units, abx, max_rows)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page)
    atomic_write_text(out.with_suffix(".json"), json.dumps(json_safe(numbers), indent=2) + "\n")
    atomic_write_text(out.with_suffix(".csv"), table)
    return out


def _units(directory: Path, alignments, phone_rate: float) -> UnitsRun:
    corpus = TokenizedCorpus.open(directory)
    quality = {}
    if alignments is not None:
        for stream in corpus.streams:
            joint = joint_counts(directory, alignments, stream, phone_rate)
            quality[stream] = (teacher_quality(joint), joint)
    return UnitsRun(directory.name, stats(directory), {s: code_counts_of(corpus, s) for s in corpus.streams}, quality)
