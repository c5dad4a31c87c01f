"""Frame-level phone labels, for measuring units against them.

Two inputs:
- fairseq's frame alignment tsv (what `measure_teacher_quality.py` reads): one line per
  utterance, `uid<TAB>ph1,ph2,...`, one phone per frame (100 Hz for LibriSpeech's);
- Montreal Forced Aligner TextGrids (a file, or a directory of `<uid>.TextGrid`), read with
  praatio: the intervals of the phone tier become frames at `rate` Hz, each frame taking the
  phone whose interval holds its centre; empty intervals (MFA's silence) become `sil`.

Stress digits are removed (`AH0` -> `AH`) unless `keep_stress`, as fairseq does by default.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import FormatError

SILENCE = "sil"
PHONE_TIERS = ("phones", "phone", "Phones", "Phone")


class AlignmentError(FormatError):
    pass


def _clean(phone: str, keep_stress: bool) -> str:
    return phone if keep_stress else re.sub("[0-9]", "", phone)


def read_fairseq_tsv(path: Path, keep_stress: bool = False) -> dict[str, list[str]]:
    out = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            uid, phones = line.rstrip("\n").split("\t")
        except ValueError:
            raise AlignmentError(f"{path}:{number}: expected `uid<TAB>ph1,ph2,...`") from None
        out[uid] = [_clean(p, keep_stress) for p in phones.split(",")]
    return out


def read_textgrid(path: Path, rate: float = 100.0, keep_stress: bool = False, tier: str | None = None) -> list[str]:
    from praatio import textgrid

    try:
        grid = textgrid.openTextgrid(str(path), includeEmptyIntervals=True)
    except Exception as error:  # noqa: BLE001 - praatio raises many kinds for a bad file
        raise AlignmentError(f"{path}: not a readable TextGrid ({type(error).__name__}: {error})") from None
    names = [tier] if tier else [n for n in PHONE_TIERS if n in grid.tierNames]
    if not names or names[0] not in grid.tierNames:
        raise AlignmentError(f"{path}: no phone tier (looked for {tier or ', '.join(PHONE_TIERS)}; "
                             f"it has {', '.join(grid.tierNames)})")
    intervals = grid.getTier(names[0]).entries
    frames = int(np.floor(grid.maxTimestamp * rate + 1e-9))
    centres = (np.arange(frames) + 0.5) / rate
    starts = np.array([e.start for e in intervals])
    which = np.searchsorted(starts, centres, side="right") - 1
    labels = []
    for t, i in zip(centres, which):
        if i < 0 or t >= intervals[i].end:
            labels.append(SILENCE)  # a gap the tier does not cover
        else:
            label = intervals[i].label.strip()
            labels.append(_clean(label, keep_stress) if label else SILENCE)
    return labels


def read_alignments(path: str | Path, rate: float = 100.0, keep_stress: bool = False,
                    tier: str | None = None) -> dict[str, list[str]]:
    """uid -> phone per frame, from a fairseq tsv, a TextGrid, or a directory of TextGrids (uid =
    the file's path relative to the directory, without extension)."""
    path = Path(path)
    if path.is_dir():
        grids = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".textgrid")
        if not grids:
            raise AlignmentError(f"{path}: no .TextGrid files")
        return {g.relative_to(path).with_suffix("").as_posix(): read_textgrid(g, rate, keep_stress, tier)
                for g in grids}
    if not path.exists():
        raise AlignmentError(f"{path}: no such file or directory")
    if path.suffix.lower() == ".textgrid":
        return {path.stem: read_textgrid(path, rate, keep_stress, tier)}
    return read_fairseq_tsv(path, keep_stress)
