"""`speechtok eval resynth` (how well speech survives a tokenizer's round trip), `speechtok eval
abx` (how discriminable its phones are) and `speechtok report` (tokenizers compared on one HTML
page)."""

from __future__ import annotations

import json
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
    mos_model: Optional[str] = typer.Option(None, help="MOS: the predicted mean opinion score of the resynthesis (and of the original), by a transformers audio-classification model with one regression output."),
    id_column: Optional[str] = ID_COLUMN,
    device: str = DEVICE,
    quiet: bool = QUIET,
):
    """Encode and decode a sample of a corpus (a codec, or units with a vocoder) and score the round trip.

    Per utterance and on average: wide-band PESQ, STOI and ESTOI, SI-SDR, mel-cepstral distortion, log-mel distance, F0 RMSE / correlation and voicing error (pYIN), tokens per second; the tokenizer's bitrate. Both waves are compared at 16 kHz. A named model that cannot be loaded (offline, not cached) is reported and its metric left out; the rest is still measured. Needs the quality extra: pip install "speechtok[quality]"."""
    from ..corpus.judges import load_judges
    from ..corpus.resynth import resynthesize
    from ..eval.resynthesis import require_packages

    require_packages()
    tok = load_tokenizer(tokenizer, None, device, None, n_quantizers, bandwidth)
    judges, skipped = load_judges(speaker_model, asr_model, device, mos_model)
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
        for name, m in result.summary["metrics"].items():
            table.add_row(name, *(("-", "-") if m["mean"] is None else (f"{m['mean']:.4g}", f"{m['median']:.4g}")),
                          str(m["count"]))
        Console(stderr=True, soft_wrap=True).print(table)
        say(f"eval resynth: {out}/eval.json, utterances.jsonl, audio/")
    if result.failed:
        for row in result.failed[:10]:
            err.print(f"failed: {row['source']}: {row['error']}")
        raise typer.Exit(EXIT_FILES_FAILED)


@eval_app.command("abx")
@boundary
def eval_abx(
    corpus: str = typer.Argument(..., metavar="FEATURES_OR_TOKENS", help="A directory written by `speechtok extract` (features) or `speechtok tokenize` (units)."),
    alignments: Path = typer.Option(..., "--alignments", "-a", help="Frame-level phones: fairseq's tsv (uid<TAB>ph,ph,...), an MFA .TextGrid, or a directory of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for abx.json (the scores) and abx.item (the items, ZeroSpeech's format)."),
    stream: Optional[str] = typer.Option(None, help="Layer or stream to score (default: the only one)."),
    speakers: Optional[Path] = typer.Option(None, help="uid<TAB>speaker lines (default: the id up to its first '-', as LibriSpeech ids)."),
    representation: str = typer.Option("auto", help="Units: centroids (their k-means centroids; auto's choice when the tokenizer is here) or onehot."),
    phone_rate: float = typer.Option(100.0, help="Frame rate of the phone labels (fairseq's are 100 Hz)."),
    keep_stress: bool = typer.Option(False, "--keep-stress", help="Keep stress digits (AH0); fairseq removes them."),
    tier: Optional[str] = typer.Option(None, help="TextGrid tier with the phones (default: phones)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a line."),
):
    """ABX phone discriminability within and across speakers, as ZeroSpeech 2021 / libri-light define it (triphone items from the alignments, DTW with the angular distance; error rates: 0 is perfect, 0.5 chance).

    Computed by ZeroSpeech's library: pip install --no-deps zerospeech-libriabx2 && pip install tqdm pandas."""
    from ..corpus.abx import abx

    result = abx(corpus, alignments, out, stream, speakers, phone_rate, representation, keep_stress, tier)
    if as_json:
        typer.echo(json.dumps(result))
        return
    within, across = result["within_speaker"], result["across_speaker"]
    say(f"ABX error ({result['representation']} of {result['stream']}): within speaker "
        f"{'-' if within is None else f'{100 * within:.2f}%'}, across speaker {'-' if across is None else f'{100 * across:.2f}%'} "
        f"({result['items']} items, {result['utterances']} utterances, {result['speakers']} speakers)")


def report(
    directories: List[Path] = typer.Argument(..., metavar="EVAL_OR_TOKENS_DIRS", help="Directories written by `speechtok eval resynth`, `eval abx` or `tokenize` (tokenizers compared on the same audio)."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The page; OUT.json and OUT.csv beside it hold every number."),
    alignments: Optional[Path] = typer.Option(None, "--alignments", "-a", help="Phones of the tokenized corpora (fairseq tsv or MFA TextGrids): adds PNMI by K and unit-phone heatmaps."),
    max_rows: int = typer.Option(20, help="Utterances shown per tokenizer, with audio players and spectrograms (all are in the JSON / CSV)."),
):
    """One self-contained HTML page comparing tokenizers: resynthesis metrics and quality against bitrate, each utterance's original and resynthesised audio with spectrograms, ABX, codebook usage and dead codes, PNMI by K and unit-phone heatmaps.

    No network needed to view it: plots and audio are inside the page. Needs matplotlib (pip install "speechtok[quality]")."""
    from ..corpus.report import build_report

    path = build_report(directories, out, alignments, max_rows)
    say(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB), {path.with_suffix('.json').name}, "
        f"{path.with_suffix('.csv').name}")


def register(app: typer.Typer) -> None:
    """`eval resynth` joins `speechtok eval` (`labels.eval_app`, registered by `labels`); `report` is its own command."""
    app.command("report")(boundary(report))
