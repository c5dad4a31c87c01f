"""`speechtok report`: one self-contained HTML page comparing tokenizers on the same audio, from the
directories `speechtok eval resynth` writes, plus every number as JSON and CSV beside it.

The page needs no network: plots are inline PNGs (matplotlib, Agg), audio is inline WAV (16-bit,
16 kHz). It holds a table of each tokenizer's bitrate and mean metrics, bitrate-vs-quality
scatter plots, and per utterance the original and resynthesised audio with their spectrograms.
A small script on the page counts the audio clips and images the browser could decode and shows
it at the top (what the browser test reads).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from ..errors import InputError
from .resynthesis import HIGHER_IS_BETTER, METRICS, MODEL_METRICS

SCATTER = ("pesq", "stoi", "mcd", "si_sdr")  # quality against bitrate
UNITS = {"pesq": "", "stoi": "", "estoi": "", "si_sdr": " dB", "mcd": " dB", "log_mel": "", "f0_rmse": " Hz",
         "f0_corr": "", "voicing_error": "", "speaker_similarity": "", "dwer": ""}


@dataclass
class Evaluation:
    """One `eval resynth` directory, read back."""

    directory: Path
    name: str
    summary: dict
    rows: list[dict]

    @classmethod
    def read(cls, directory: str | os.PathLike) -> Evaluation:
        directory = Path(directory)
        summary_file, rows_file = directory / "eval.json", directory / "utterances.jsonl"
        for path in (summary_file, rows_file):
            if not path.exists():
                raise InputError(f"{directory}: no {path.name}; give directories written by `speechtok eval resynth`")
        summary = json.loads(summary_file.read_text())
        rows = [json.loads(line) for line in rows_file.read_text().splitlines() if line.strip()]
        source = summary.get("source")
        return cls(directory, Path(source).name if source else directory.name, summary, rows)

    def mean(self, metric: str) -> float | None:
        return self.summary["metrics"].get(metric, {}).get("mean")


def build_report(directories: Sequence[str | os.PathLike], out: str | os.PathLike, max_rows: int = 20) -> Path:
    """Write OUT (the page), OUT.json and OUT.csv (every number) for the evaluations in `directories`."""
    if not directories:
        raise InputError("give at least one directory written by `speechtok eval resynth`")
    evaluations = [Evaluation.read(d) for d in directories]
    names = [e.name for e in evaluations]
    for e in evaluations:  # two runs of one tokenizer: tell them apart by directory
        if names.count(e.name) > 1:
            e.name = f"{e.name} ({e.directory.name})"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sections = [_summary_table(evaluations), _scatter(evaluations)]
    sections += [_utterances(e, max_rows) for e in evaluations]
    _write(out, _page(sections))
    _write(out.with_suffix(".json"), json.dumps([{"name": e.name, "directory": str(e.directory), **e.summary,
                                                  "utterances": e.rows} for e in evaluations], indent=2) + "\n")
    _write(out.with_suffix(".csv"), _csv(evaluations))
    return out


def _summary_table(evaluations: list[Evaluation]) -> str:
    # the model-based metrics where any evaluation has them
    metrics = [*METRICS, *(m for m in MODEL_METRICS if any(m in e.summary["metrics"] for e in evaluations))]
    head = "".join(f"<th>{m}{html.escape(UNITS[m])} {'&uarr;' if HIGHER_IS_BETTER[m] else '&darr;'}</th>"
                   for m in metrics)
    rows = []
    for e in evaluations:
        cells = "".join(f"<td>{_number(e.mean(m))}</td>" for m in metrics)
        rows.append(f"<tr><td>{html.escape(e.name)}</td><td>{e.summary['bitrate']:.0f}</td>"
                    f"<td>{_number(e.mean('tokens_per_second'))}</td><td>{e.summary['sample']}</td>{cells}</tr>")
    notes = "".join(f"<p>{html.escape(e.name)}: {html.escape(metric)} left out ({html.escape(why)})</p>"
                    for e in evaluations for metric, why in e.summary.get("skipped", {}).items())
    return (f"<h2>Summary (means over the sample)</h2><table><tr><th>tokenizer</th><th>bit/s</th><th>tokens/s</th>"
            f"<th>utterances</th>{head}</tr>{''.join(rows)}</table>{notes}")


def _scatter(evaluations: list[Evaluation]) -> str:
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.4), constrained_layout=True)
    axes = axes.ravel()
    for ax, metric in zip(axes, SCATTER):
        for i, e in enumerate(evaluations):
            value = e.mean(metric)
            if value is not None:
                ax.scatter(e.summary["bitrate"], value, s=60, color=f"C{i}", label=e.name)
        ax.set_xscale("log")
        ax.set_xlabel("bitrate (bit/s)")
        ax.set_ylabel(metric + UNITS[metric])
        ax.set_title(f"{metric} ({'higher' if HIGHER_IS_BETTER[metric] else 'lower'} is better)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return f"<h2>Quality against bitrate</h2>{_png(fig)}"


def _utterances(e: Evaluation, max_rows: int) -> str:
    shown = e.rows[:max_rows]
    rows = []
    for r in shown:
        if "error" in r:
            rows.append(f"<tr><td>{html.escape(str(r['id']))}</td><td colspan='4'>failed: {html.escape(r['error'])}</td></tr>")
            continue
        original = _read(e.directory / "audio" / f"{r['n']}.orig.wav")
        resynth = _read(e.directory / "audio" / f"{r['n']}.resynth.wav")
        numbers = ", ".join(f"{m} {_number(r.get(m))}" for m in ("pesq", "stoi", "si_sdr", "mcd", "f0_rmse"))
        rows.append(f"<tr><td>{html.escape(str(r['id']))}<br><small>{numbers}</small></td>"
                    f"<td>{_audio(original)}</td><td>{_spectrogram(original)}</td>"
                    f"<td>{_audio(resynth)}</td><td>{_spectrogram(resynth)}</td></tr>")
    more = f"<p>{len(e.rows) - len(shown)} more utterances in the JSON and CSV.</p>" if len(e.rows) > len(shown) else ""
    return (f"<h2>{html.escape(e.name)}: utterances</h2><table><tr><th>utterance</th><th>original</th><th></th>"
            f"<th>resynthesised</th><th></th></tr>{''.join(rows)}</table>{more}")


def _spectrogram(wave: np.ndarray | None) -> str:
    if wave is None or not len(wave):
        return "(missing)"
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3.2, 1.4), constrained_layout=True)
    with np.errstate(divide="ignore"):  # digital silence: log of 0, drawn as the lowest colour
        ax.specgram(wave, NFFT=512, Fs=16000, noverlap=384, cmap="magma")
    ax.set_axis_off()
    return _png(fig, dpi=80)


def _audio(wave: np.ndarray | None) -> str:
    if wave is None:
        return "(missing)"
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wave, -1, 1), 16000, format="WAV", subtype="PCM_16")
    return f"<audio controls preload='auto' src='data:audio/wav;base64,{base64.b64encode(buffer.getvalue()).decode()}'></audio>"


def _png(fig, dpi: int = 100) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    _pyplot().close(fig)
    return f"<img alt='plot' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"


def _read(path: Path) -> np.ndarray | None:
    if not path.exists():
        return None
    wave, _ = sf.read(path, dtype="float32")
    return wave


def _number(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.4g}"


def _csv(evaluations: list[Evaluation]) -> str:
    columns = ["tokenizer", "bitrate", "n", "id", "source", "seconds", "tokens_per_second", *METRICS, *MODEL_METRICS, "error"]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore")
    writer.writeheader()
    for e in evaluations:
        for r in e.rows:
            writer.writerow({"tokenizer": e.name, "bitrate": e.summary["bitrate"], **r})
    return text.getvalue()


# counts what the browser could decode and shows it; the browser test reads the same line
CHECK = """<script>
function checkMedia() {
  const clips = [...document.querySelectorAll('audio')], images = [...document.querySelectorAll('img')];
  let pending = clips.length;
  const done = () => {
    const playable = clips.filter(a => a.readyState >= 1 && a.duration > 0).length;
    const decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
    const line = document.getElementById('media');
    line.textContent = `${playable} of ${clips.length} audio clips playable, ${decoded} of ${images.length} images shown`;
    line.dataset.playable = playable; line.dataset.audio = clips.length;
    line.dataset.decoded = decoded; line.dataset.images = images.length;
  };
  if (!pending) { done(); return; }
  clips.forEach(a => {
    const settle = () => { if (--pending === 0) done(); };
    if (a.readyState >= 1) settle(); else { a.addEventListener('loadedmetadata', settle, {once: true});
                                            a.addEventListener('error', settle, {once: true}); }
  });
}
window.addEventListener('load', checkMedia);
</script>"""

STYLE = """<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 4px 6px; text-align: left; vertical-align: middle; }
th { background: #f3f3f3; }
audio { width: 220px; }
#media { color: #666; font-size: 12px; }
</style>"""


def _page(sections: list[str]) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>speechtok report</title>{STYLE}</head><body>"
            f"<h1>speechtok: tokenizers compared</h1><p id='media'>checking audio and images...</p>"
            f"{''.join(sections)}{CHECK}</body></html>\n")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
