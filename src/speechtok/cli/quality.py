"""`speechtok eval resynth` (how well speech survives a tokenizer's round trip) and `speechtok
report` (tokenizers compared on one HTML page)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import EXIT_FILES_FAILED
from .common import BANDWIDTH, DEVICE, ID_COLUMN, INPUTS, N_QUANTIZERS, QUIET, TOKENIZER, boundary, err, load_tokenizer, say
from .labels import eval_app


@eval_app.command("resynth")
@boundary
def eval_resynth(
    inputs: List[str] = INPUTS,
    tokenizer: str = TOKENIZER,
    n: int = typer.Option(20, "-n", help="Utterances to resynthesise: the first N of a seeded shuffle of the inputs (0: all)."),
    out: Path = typer.Option(..., "--out", "-o", help="Evaluation directory: eval.json, utterances.jsonl / .csv, audio/ (original and resynthesised, 16 kHz)."),
    seed: int = typer.Option(0, help="Seed of the sample: the same seed picks the same utterances, so tokenizers compare on the same audio."),
    n_quantizers: Optional[int] = N_QUANTIZERS,
    bandwidth: Optional[float] = BANDWIDTH,
    speaker_model: Optional[str] = typer.Option(None, help="Speaker similarity: cosine of the two waves' embeddings from this transformers x-vector model (hub id or directory), e.g. microsoft/wavlm-base-plus-sv."),
    asr_model: Optional[str] = typer.Option(None, help="dWER: WER of the resynthesis' transcript against the original's, by this transformers CTC or Whisper model, e.g. facebook/hubert-large-ls960-ft."),
    id_column: Optional[str] = ID_COLUMN,
    device: str = DEVICE,
    quiet: bool = QUIET,
):
    """Encode and decode a sample of a corpus (a codec, or units with a vocoder) and score the round trip.

    Per utterance and on average: wide-band PESQ, STOI and ESTOI, SI-SDR, mel-cepstral distortion, log-mel distance, F0 RMSE / correlation and voicing error (pYIN), tokens per second; the tokenizer's bitrate. Both waves are compared at 16 kHz. A named model that cannot be loaded (offline, not cached) is reported and its metric left out; the rest is still measured. Needs the quality extra: pip install "speechtok[quality]"."""
    from ..corpus.judges import load_judges
    from ..corpus.resynth import resynthesize
    from ..eval.resynthesis import METRICS, require_packages

    require_packages()
    tok = load_tokenizer(tokenizer, None, device, None, n_quantizers, bandwidth)
    judges, skipped = load_judges(speaker_model, asr_model, device)
    for metric, why in skipped.items():
        err.print(f"[yellow]{metric} left out[/yellow]: {why}", soft_wrap=True)
    bar = Progress(TextColumn("eval resynth"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                   disable=quiet)
    with bar:
        task = bar.add_task("utterances", total=n or None)
        result = resynthesize(inputs, tok, out, n or None, seed, id_column, judges, skipped,
                              progress=lambda k: bar.advance(task, k))
    if not quiet:
        table = Table(title=f"{tokenizer}: {result.summary['sample']} utterances, {result.summary['bitrate']:.0f} bit/s")
        for column in ("metric", "mean", "median", "utterances"):
            table.add_column(column)
        for name in ("tokens_per_second", *METRICS, *(j.name for j in judges)):
            m = result.summary["metrics"][name]
            table.add_row(name, *(("-", "-") if m["mean"] is None else (f"{m['mean']:.4g}", f"{m['median']:.4g}")),
                          str(m["count"]))
        Console(stderr=True, soft_wrap=True).print(table)
        say(f"eval resynth: {out}/eval.json, utterances.jsonl, audio/")
    if result.failed:
        for row in result.failed[:10]:
            err.print(f"failed: {row['source']}: {row['error']}")
        raise typer.Exit(EXIT_FILES_FAILED)


def report(
    evaluations: List[Path] = typer.Argument(..., metavar="EVAL_DIRS", help="Directories written by `speechtok eval resynth` (one per tokenizer, on the same audio)."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The page; OUT.json and OUT.csv beside it hold every number."),
    max_rows: int = typer.Option(20, help="Utterances shown per tokenizer, with audio players and spectrograms (all are in the JSON / CSV)."),
):
    """One self-contained HTML page comparing tokenizers: summary table, quality against bitrate, and each utterance's original and resynthesised audio with spectrograms.

    No network needed to view it: plots and audio are inside the page. Needs matplotlib (pip install "speechtok[quality]")."""
    from ..eval.report import build_report

    path = build_report(evaluations, out, max_rows)
    say(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB), {path.with_suffix('.json').name}, "
        f"{path.with_suffix('.csv').name}")


def register(app: typer.Typer) -> None:
    """`eval resynth` joins `speechtok eval` (`labels.eval_app`, registered by `labels`); `report` is its own command."""
    app.command("report")(boundary(report))
