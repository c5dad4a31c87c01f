"""`speechtok eval resynth`: a sample of a corpus through a tokenizer and back, and how much of the
speech survived (`eval.resynthesis` metrics), per utterance and overall.

    EVAL_DIR/
        eval.json           the tokenizer (config, frame rate, streams, bitrate), the sample, and each
                            metric's mean, median and count over the utterances
        utterances.jsonl    one line per utterance: id, source, seconds, tokens per second, every
                            metric (or the reason it failed); speaker similarity and dWER when
                            their models are given (`judges`)
        utterances.csv      the same as a table
        audio/<n>.orig.wav, audio/<n>.resynth.wav
                            each utterance and its resynthesis at 16 kHz (what the metrics compared),
                            for listening and for `speechtok report`

The sample is the first N utterances of a seeded shuffle of the inputs (the same N files every
time for the same inputs and seed), so tokenizers evaluated separately compare on the same audio.
Every file is written whole or not at all; a re-run rewrites the directory's files.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..audio import Reading
from ..errors import InputError
from ..eval.resynthesis import METRICS, MODEL_METRICS, compare, resample, rows_csv
from ..tokenizer import TokenizerBase
from .inputs import collect
from .reader import AudioReader
from .store import atomic_write_text, atomic_write_wave

RATE = 16000  # the rate both waves are compared (and kept) at
EVAL_FILE = "eval.json"


@dataclass
class ResynthResult:
    out: Path
    rows: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if "error" in r]


def sample(count: int, n: int | None, seed: int) -> list[int]:
    """Indices of the sample: the first `n` of a seeded permutation, in input order."""
    if n is None or n >= count:
        return list(range(count))
    return sorted(np.random.default_rng(seed).permutation(count)[:n].tolist())


def resynthesize(inputs: Sequence[str | os.PathLike], tokenizer: TokenizerBase, out: str | os.PathLike, n: int | None = 20,
                 seed: int = 0, id_column: str | None = None, judges: Sequence = (), skipped: dict | None = None,
                 progress: Callable[[int], None] | None = None) -> ResynthResult:
    """Encode and decode a sample of `inputs` with `tokenizer` and score each round trip (and by
    each of `judges`, `judges.load_judges`; `skipped`: the judges that could not load, and why);
    writes EVAL_DIR (module docstring). `progress(1)` after each utterance."""
    if not tokenizer.has_decoder:
        raise InputError("the tokenizer has no decoder, so nothing can be resynthesised: give a codec, or a semantic "
                         "tokenizer with a unit vocoder (`speechtok import speechbrain`)")
    utterances = collect(inputs, id_column)
    if not utterances:
        raise InputError(f"no audio found in {', '.join(map(str, inputs))}")
    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    for old in (out / "audio").glob("*.wav"):  # an earlier run's pairs (another sample size)
        old.unlink()
    front = tokenizer.reading
    reader = AudioReader(Reading(front.sample_rate, front.min_samples))  # the audio as it is, at the tokenizer's rate
    streams = getattr(tokenizer, "streams", None)
    result = ResynthResult(out)
    for number, index in enumerate(sample(len(utterances), n, seed)):
        loaded = reader(utterances[index], index)
        u = loaded.utterance
        row = {"n": number, "id": u.id, "source": u.describe()}
        if not loaded.ok:
            result.rows.append({**row, "error": loaded.error})
            if progress is not None:
                progress(1)
            continue
        wave = loaded.wave
        try:
            units = tokenizer.encode_waves([wave if front.prepare is None else front.prepare(wave)])[0]
            decoded = tokenizer.decode(units)
            original = resample(wave, front.sample_rate, RATE)
            resynthesised = resample(decoded, tokenizer.decode_sample_rate, RATE)[: len(original)]
            seconds = len(wave) / front.sample_rate
            row.update({"seconds": seconds, "tokens_per_second": units.codes.size / seconds if seconds else float("nan"),
                        **compare(original, resynthesised, RATE)})
            for judge in judges:
                said = judge(original, resynthesised)
                row.update(said if isinstance(said, dict) else {judge.name: said})
        except Exception as error:  # noqa: BLE001 - one utterance the tokenizer or a judge fails on is reported, not fatal
            result.rows.append({**row, "error": f"{type(error).__name__}: {error}"})
            if progress is not None:
                progress(1)
            continue
        atomic_write_wave(out / "audio" / f"{number}.orig.wav", original, RATE)
        atomic_write_wave(out / "audio" / f"{number}.resynth.wav", resynthesised, RATE)
        result.rows.append(row)
        if progress is not None:
            progress(1)
    result.summary = {
        "tokenizer": tokenizer.to_dict(), "source": tokenizer.source, "frame_rate": tokenizer.frame_rate,
        "streams": list(streams) if streams is not None else None, "bitrate": tokenizer.bitrate,
        "inputs": [str(i) for i in inputs], "utterances": len(utterances), "sample": len(result.rows), "seed": seed,
        "failed": len(result.failed), "compared_at": RATE, "skipped": dict(skipped or {}),
        "metrics": {name: _aggregate([r[name] for r in result.rows if "error" not in r])
                    for name in ("tokens_per_second", *METRICS, *MODEL_METRICS) if any(name in r for r in result.rows)},
    }
    atomic_write_text(out / "utterances.jsonl", "".join(json.dumps(json_safe(r)) + "\n" for r in result.rows))
    atomic_write_text(out / "utterances.csv", rows_csv(result.rows))
    atomic_write_text(out / EVAL_FILE, json.dumps(json_safe(result.summary), indent=2) + "\n")
    return result


def _aggregate(values: list[float]) -> dict:
    """Mean and median over the finite values, and how many there were (F0 of an unvoiced pair,
    PESQ of a silent one are undefined). dWER's mean is of per-utterance rates, not a corpus WER."""
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if not len(finite):
        return {"mean": None, "median": None, "count": 0}
    return {"mean": float(finite.mean()), "median": float(np.median(finite)), "count": int(len(finite))}


def json_safe(value):
    """`value` with NaN / infinity as null: JSON has no such numbers (an identical round trip's
    SI-SDR is +inf; the CSV keeps it)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value
