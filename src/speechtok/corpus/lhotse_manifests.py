"""Lhotse manifests as corpus inputs, read as the JSON lines Lhotse writes (`.jsonl` or
`.jsonl.gz`; no Lhotse needed):

- a CutSet: one utterance per cut (id = the cut's id), the segment [start, start + duration) of its
  recording;
- a RecordingSet with a SupervisionSet (both given as inputs): one utterance per supervision
  (id = the supervision's id), its segment of its recording;
- a RecordingSet alone: one utterance per recording, the whole file.

Recordings must have a `file` source (paths as Lhotse stores them: relative ones are relative to
the working directory). Multi-channel recordings are downmixed, like every input.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterator

from ..errors import FormatError, InputError

Segment = tuple[str, str, float | None, float | None]  # id, path, start, duration


def is_jsonl(path: Path) -> bool:
    return path.name.lower().endswith((".jsonl", ".jsonl.gz", ".json.gz"))


def kind(path: Path) -> str | None:
    """"cuts", "recordings", "supervisions" for a Lhotse manifest, None for other JSON lines."""
    first = next(_lines(path), None)
    if first is None:
        return None
    if "recording" in first and str(first.get("type", "")).endswith("Cut"):
        return "cuts"
    if "sources" in first and "sampling_rate" in first:
        return "recordings"
    if "recording_id" in first and "start" in first:
        return "supervisions"
    return None


def _lines(path: Path) -> Iterator[dict]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as error:
                        raise FormatError(f"{path}:{number}: not a JSON line ({error})") from None
    except (OSError, EOFError) as error:  # a damaged .gz
        raise FormatError(f"{path}: unreadable ({error})") from None


def _source(recording: dict, where: Path) -> str:
    files = [s for s in recording.get("sources", []) if s.get("type") == "file"]
    if not files:
        kinds = ", ".join(sorted({s.get("type", "?") for s in recording.get("sources", [])})) or "none"
        raise InputError(f"{where}: recording {recording.get('id')!r} has no file source (sources: {kinds}); "
                         "speechtok reads file sources")
    return files[0]["source"]


def recordings(path: Path) -> dict[str, str]:
    """Recording id -> its file."""
    return {r["id"]: _source(r, path) for r in _lines(path)}


def from_recordings(path: Path) -> list[Segment]:
    return [(uid, source, None, None) for uid, source in recordings(path).items()]


def from_supervisions(path: Path, files: dict[str, str]) -> list[Segment]:
    out = []
    for s in _lines(path):
        if s["recording_id"] not in files:
            raise InputError(f"{path}: supervision {s['id']!r} is of recording {s['recording_id']!r}, which the "
                             "RecordingSet given does not have")
        out.append((s["id"], files[s["recording_id"]], float(s["start"]), float(s["duration"])))
    return out


def from_cuts(path: Path) -> list[Segment]:
    out = []
    for cut in _lines(path):
        if "recording" not in cut:
            raise InputError(f"{path}: cut {cut.get('id')!r} has no recording (padding or mixed cuts are not read)")
        out.append((cut["id"], _source(cut["recording"], path), float(cut["start"]), float(cut["duration"])))
    return out
