"""`speechtok report`'s page: one self-contained HTML file comparing tokenizers on the same audio,
plus every number as JSON and CSV beside it (`corpus.report` gathers what it shows).

The page needs no network: plots are inline PNGs (matplotlib, Agg), audio is inline WAV (16-bit,
16 kHz). From `eval resynth` directories: each tokenizer's bitrate and mean metrics, quality
against bitrate, and per utterance the original and resynthesised audio with spectrograms. From
`eval abx` directories: ABX error within / across speakers. From tokenized corpora: codebook
usage (how often each code occurs, dead codes), and with alignments PNMI by K and a unit-phone
confusion heatmap. A small script on the page counts the audio clips and images the browser
could decode and shows it at the top (what the browser test reads).
"""

from __future__ import annotations

import base64
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
from .metrics import JointCounts, StreamStats, TeacherQuality
from .resynthesis import HIGHER_IS_BETTER, METRICS, MODEL_METRICS, rows_csv

SCATTER = ("pesq", "stoi", "mcd", "si_sdr")  # quality against bitrate
UNITS = {"pesq": "", "stoi": "", "estoi": "", "si_sdr": " dB", "mcd": " dB", "log_mel": "", "f0_rmse": " Hz",
         "f0_corr": "", "voicing_error": "", "speaker_similarity": "", "dwer": "", "mos": "", "mos_original": ""}


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


@dataclass
class UnitsRun:
    """A tokenized corpus: per stream its codebook statistics and code counts, and with
    alignments its teacher quality and (phone, unit) counts."""

    name: str
    stats: list[StreamStats]
    counts: dict[str, np.ndarray]
    quality: dict[str, tuple[TeacherQuality, JointCounts]]


@dataclass
class AbxRun:
    """An `eval abx` directory's abx.json."""

    name: str
    result: dict


def render(evaluations: Sequence[Evaluation] = (), units: Sequence[UnitsRun] = (), abx: Sequence[AbxRun] = (),
           max_rows: int = 20) -> tuple[str, dict, str]:
    """(the page, every number, the per-utterance table as CSV)."""
    names = [e.name for e in evaluations]
    for e in evaluations:  # two runs of one tokenizer: tell them apart by directory
        if names.count(e.name) > 1:
            e.name = f"{e.name} ({e.directory.name})"
    sections = []
    if evaluations:
        sections += [_summary_table(evaluations), _scatter(evaluations)]
    if abx:
        sections.append(_abx(abx))
    if units:
        sections.append(_units(units))
    sections += [_utterances(e, max_rows) for e in evaluations]
    numbers = {
        "resynthesis": [{"name": e.name, "directory": str(e.directory), **e.summary, "utterances": e.rows}
                        for e in evaluations],
        "abx": [{"name": a.name, **a.result} for a in abx],
        "units": [{"name": u.name, "streams": [{**s.as_dict(), "counts": u.counts[s.stream].tolist(),
                                               **({"teacher_quality": u.quality[s.stream][0].as_dict()}
                                                  if s.stream in u.quality else {})} for s in u.stats]}
                  for u in units],
    }
    return _page(sections), numbers, _csv(evaluations)


def _abx(runs: Sequence[AbxRun]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(runs) + 2), 3.2), constrained_layout=True)
    x = np.arange(len(runs))
    for offset, (key, label) in zip((-0.2, 0.2), (("within_speaker", "within speaker"), ("across_speaker", "across"))):
        ax.bar(x + offset, [100 * (r.result.get(key) or 0) for r in runs], width=0.4, label=label)
    ax.set_xticks(x, [r.name for r in runs], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("ABX error (%)")
    ax.set_title("ABX phone discriminability (lower is better)")
    ax.legend(fontsize=8)
    rows = "".join(f"<tr><td>{html.escape(r.name)}</td><td>{html.escape(str(r.result.get('representation')))}</td>"
                   f"<td>{_percent(r.result.get('within_speaker'))}</td><td>{_percent(r.result.get('across_speaker'))}</td>"
                   f"<td>{r.result.get('items')}</td></tr>" for r in runs)
    return (f"<h2>ABX</h2><table><tr><th>run</th><th>compared as</th><th>within speaker</th><th>across speaker</th>"
            f"<th>items</th></tr>{rows}</table>{_png(fig)}")


def _units(runs: Sequence[UnitsRun]) -> str:
    plt = _pyplot()
    parts = ["<h2>Units</h2>"]
    rows = []
    for u in runs:
        for s in u.stats:
            q = u.quality.get(s.stream)
            rows.append(f"<tr><td>{html.escape(u.name)}</td><td>{html.escape(s.stream)}</td><td>{s.k}</td>"
                        f"<td>{s.used} ({100 * s.usage:.1f}%)</td><td>{s.k - s.used}</td><td>{s.perplexity:.1f}</td>"
                        f"<td>{s.nominal_bitrate:.0f}</td><td>{'-' if q is None else f'{q[0].pnmi:.4f}'}</td></tr>")
    parts.append("<table><tr><th>corpus</th><th>stream</th><th>K</th><th>codes used</th><th>dead codes</th>"
                 f"<th>perplexity</th><th>bit/s</th><th>PNMI</th></tr>{''.join(rows)}</table>")
    # how often each code occurs, most used first (a flat curve: codes used evenly)
    fig, ax = plt.subplots(figsize=(6.5, 3.2), constrained_layout=True)
    for i, u in enumerate(runs):
        for s in u.stats:
            counts = np.sort(u.counts[s.stream])[::-1]
            ax.plot(np.arange(1, len(counts) + 1), np.maximum(counts / max(counts.sum(), 1), 1e-7),
                    label=f"{u.name} {s.stream} ({s.k - s.used} dead)", color=f"C{i}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("code rank")
    ax.set_ylabel("share of tokens")
    ax.set_title("Codebook usage")
    ax.legend(fontsize=7)
    parts.append(_png(fig))
    with_quality = [(u, s, u.quality[s.stream]) for u in runs for s in u.stats if s.stream in u.quality]
    if with_quality:
        fig, ax = plt.subplots(figsize=(5.5, 3.2), constrained_layout=True)
        for i, (u, s, (q, _)) in enumerate(with_quality):
            ax.scatter(s.k, q.pnmi, s=50, color=f"C{i}", label=f"{u.name} {s.stream}")
        ax.set_xscale("log")
        ax.set_xlabel("K")
        ax.set_ylabel("PNMI")
        ax.set_title("PNMI by K (higher is better)")
        ax.legend(fontsize=7)
        parts.append(_png(fig))
        for u, s, (_, joint) in with_quality:
            parts.append(f"<h3>{html.escape(u.name)} {html.escape(s.stream)}: p(phone | unit)</h3>{_confusion(joint)}")
    return "".join(parts)


def _confusion(joint: JointCounts) -> str:
    """p(phone | unit) with units ordered by their most likely phone, so a good tokenizer draws a
    staircase."""
    plt = _pyplot()
    counts = joint.counts.astype(np.float64)
    given_unit = counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)
    order = np.lexsort((-given_unit.max(axis=0), given_unit.argmax(axis=0)))
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(joint.phones) + 1.5), constrained_layout=True)
    image = ax.imshow(given_unit[:, order], aspect="auto", cmap="viridis", interpolation="nearest", vmin=0, vmax=1)
    ax.set_yticks(range(len(joint.phones)), joint.phones, fontsize=7)
    ax.set_xlabel(f"units ({len(joint.units)}), ordered by their most likely phone")
    fig.colorbar(image, ax=ax, fraction=0.03)
    return _png(fig)


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


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
    return rows_csv([{"tokenizer": e.name, "bitrate": e.summary["bitrate"], **r} for e in evaluations for r in e.rows],
                    leading=("tokenizer", "bitrate"))


# counts what the browser could decode and shows it; the browser test reads the same line
CHECK = """<script>
function notBlank(image) {  // a plot that drew something: not every pixel the same
  const canvas = document.createElement('canvas');
  canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(image, 0, 0);
  const pixels = new Uint32Array(context.getImageData(0, 0, canvas.width, canvas.height).data.buffer);
  return pixels.some(p => p !== pixels[0]);
}
function checkMedia() {
  const clips = [...document.querySelectorAll('audio')], images = [...document.querySelectorAll('img')];
  let pending = clips.length;
  const done = () => {
    const playable = clips.filter(a => a.readyState >= 1 && a.duration > 0).length;
    const decoded = images.filter(i => i.complete && i.naturalWidth > 0);
    const drawn = decoded.filter(notBlank).length;
    const line = document.getElementById('media');
    line.textContent = `${playable} of ${clips.length} audio clips playable, ${drawn} of ${images.length} plots drawn`;
    line.dataset.playable = playable; line.dataset.audio = clips.length;
    line.dataset.decoded = decoded.length; line.dataset.drawn = drawn; line.dataset.images = images.length;
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
