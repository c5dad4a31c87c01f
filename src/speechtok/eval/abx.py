"""ABX phone discriminability as ZeroSpeech 2021 / libri-light define it, computed by the
ZeroSpeech library `zerospeech-libriabx2` (`zrc_abx2`); speechtok builds its inputs.

Items (ZeroSpeech's `.item` format: a header line, then `file onset offset phone prev-phone
next-phone speaker`, times in seconds) are every phone of the alignments with a phone before and
after it in the same utterance (silences are neither items nor context). An ABX trial asks
whether X (a token of phone A) is closer to another A than to a B in the same context (prev, next),
by DTW over frames with the angular (cosine) distance; "within" speaker: A, B, X from one
speaker; "across": X from another. Scores are error rates (0 = always right, 0.5 = chance).

`zrc_abx2` imports its CPC feature loaders, which import torchaudio, at import time; features
given as files never use them, so where torchaudio is not installed an empty stand-in module is
registered for the duration of that import (torchaudio has no CPU build on some machines).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

SILENCES = frozenset({"sil", "sp", "spn", "", "<sil>", "SIL", "SP", "SPN"})
HEADER = "#file onset offset #phone prev-phone next-phone speaker"


@dataclass(frozen=True)
class Item:
    file: str
    onset: float
    offset: float
    phone: str
    prev: str
    next: str
    speaker: str


def phone_segments(frames: list[str], rate: float) -> list[tuple[float, float, str]]:
    """(onset s, offset s, phone) runs of a frame-level phone sequence at `rate` frames/s."""
    segments, start = [], 0
    for i in range(1, len(frames) + 1):
        if i == len(frames) or frames[i] != frames[start]:
            segments.append((start / rate, i / rate, frames[start]))
            start = i
    return segments


def build_items(alignments: dict[str, list[str]], speakers: dict[str, str], rate: float,
                names: dict[str, str] | None = None) -> list[Item]:
    """Triphone items of every utterance in `speakers` (uid -> speaker); `names` maps a uid to
    the file name its features are stored under (default: the uid)."""
    items = []
    for uid, speaker in speakers.items():
        segments = [s for s in phone_segments(alignments[uid], rate) if s[2] not in SILENCES]
        for before, (onset, offset, phone), after in zip(segments, segments[1:], segments[2:]):
            items.append(Item((names or {}).get(uid, uid), onset, offset, phone, before[2], after[2], speaker))
    return items


def write_item_file(items: list[Item], path: str | os.PathLike) -> Path:
    path = Path(path)
    for item in items:
        if any(not value or any(c.isspace() for c in value) for value in (item.file, item.phone, item.prev, item.next,
                                                                          item.speaker)):
            raise InputError(f"{path}: an item field is empty or holds whitespace ({item}); .item columns are "
                             "separated by spaces")
    lines = [HEADER] + [f"{i.file} {i.onset:.4f} {i.offset:.4f} {i.phone} {i.prev} {i.next} {i.speaker}" for i in items]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def read_item_file(path: str | os.PathLike) -> list[Item]:
    lines = Path(path).read_text().splitlines()[1:]
    items = []
    for number, line in enumerate(lines, 2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 7:
            raise InputError(f"{path}:{number}: expected 7 columns (file onset offset phone prev next speaker)")
        items.append(Item(fields[0], float(fields[1]), float(fields[2]), *fields[3:]))
    return items


def abx_error_rates(features: str | os.PathLike, item_file: str | os.PathLike, frame_rate: float,
                    speaker_mode: str = "all", context_mode: str = "within", seed: int = 3459) -> dict[str, float]:
    """{"within" / "across" speaker: error rate} of the `<file>.npy` [T, D] features in the
    directory `features` on the items of `item_file`, by zrc_abx2 (cosine, DTW, CPU)."""
    abx = _zrc_abx2()
    args = abx.EvalArgs(path_data=str(features), path_item_file=str(item_file), file_extension=".npy",
                        feature_size=1.0 / frame_rate, cuda=False, speaker_mode=speaker_mode, context_mode=context_mode,
                        distance_mode="cosine", seed=seed)
    with warnings.catch_warnings():  # the library's own deprecation and naming warnings, not the user's business
        warnings.simplefilter("ignore")
        results = abx.EvalABX().eval_abx(args)
    return {r["abx-s-condition"]: float(r["score"]) for r in results if r["abx-c-condition"] == context_mode}


def _zrc_abx2():
    if importlib.util.find_spec("zrc_abx2") is None:
        raise InputError("ABX needs the ZeroSpeech library: pip install --no-deps zerospeech-libriabx2 && "
                         "pip install tqdm pandas (its torchaudio requirement is not needed here)")
    stand_in = importlib.util.find_spec("torchaudio") is None and "torchaudio" not in sys.modules
    if stand_in:
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        import zrc_abx2.eval_ABX as abx
    finally:
        if stand_in:
            del sys.modules["torchaudio"]
    return abx
