"""Speech recognition with a CTC model, scored: what `speechtok eval asr` reports.

A model is a transformers `*ForCTC` directory (or hub id) with its processor (a CTC tokenizer and a
feature extractor), as `train ctc` and transformers' fine-tuning write them. References are
fairseq letter files (`.ltr`: one utterance per line, letters separated by spaces, words ended by
`|`) or plain word transcripts (`.wrd`), one line per manifest entry. Decoding is greedy (argmax
per frame, repeats merged, blanks dropped: the processor's `batch_decode`); WER and CER are
jiwer's, over the whole split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import hub
from ..audio import load_audio
from ..corpus.inputs import from_tsv
from ..corpus.judges import ctc_logits, greedy_text
from ..errors import InputError
from ..runtime.device import resolve_device
from .data import words_of


@dataclass
class AsrResult:
    wer: float
    cer: float
    utterances: list[dict] = field(default_factory=list)  # id, reference, hypothesis, errors per word


def read_references(path: str | os.PathLike) -> list[str]:
    """Word transcripts from a fairseq `.ltr` (letters; `|` ends a word) or `.wrd` file."""
    path = Path(path)
    lines = path.read_text().splitlines()
    if path.suffix == ".ltr":
        return [words_of(line.split()) for line in lines]
    return [" ".join(line.split()) for line in lines]


def evaluate_asr(model_name: str, tsv: str | os.PathLike, references: str | os.PathLike,
                 device: str = "cpu") -> AsrResult:
    from transformers import AutoModelForCTC, AutoProcessor

    utterances = from_tsv(Path(tsv))
    texts = read_references(references)
    if len(texts) != len(utterances):
        raise InputError(f"{references} has {len(texts)} lines but {tsv} lists {len(utterances)} utterances")
    if not all(texts):
        raise InputError(f"{references}: empty references (line {texts.index('') + 1}); WER needs words")
    target = resolve_device(device)
    hub.loading_bars()  # transformers' own bars off when the command line says so
    processor = AutoProcessor.from_pretrained(model_name)
    model = AutoModelForCTC.from_pretrained(model_name).to(target).eval()
    rate = processor.feature_extractor.sampling_rate
    with torch.no_grad():
        hypotheses = [greedy_text(processor, ctc_logits(model, processor, load_audio(u.path, rate, name=u.describe()), target))
                      for u in utterances]
    return score(texts, hypotheses, [u.id for u in utterances])


def score(references: list[str], hypotheses: list[str], ids: list[str]) -> AsrResult:
    """jiwer's WER and CER over the split, and each utterance's word errors."""
    import jiwer

    rows = []
    for uid, ref, hyp in zip(ids, references, hypotheses):
        counts = jiwer.process_words(ref, hyp)
        rows.append({"id": uid, "reference": ref, "hypothesis": hyp,
                     "word_errors": counts.substitutions + counts.deletions + counts.insertions})
    return AsrResult(jiwer.wer(references, hypotheses), jiwer.cer(references, hypotheses), rows)
