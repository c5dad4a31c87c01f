"""`speechtok hubert-labels` and `speechtok eval purity | stats | labels`: HuBERT training targets
and how good units are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import EXIT_FILES_FAILED, InputError
from .common import (
    ACTORS,
    CORPUS,
    DEVICE,
    ENGINE,
    ID_COLUMN,
    LAYER_ALIAS,
    QUIET,
    RAY_ADDRESS,
    WORKERS,
    boundary,
    collect_inputs,
    either,
    err,
    list_failures,
    load_encoder,
    make_engine,
    quiet_transformers,
    say,
)
from .progress import JobProgress


@boundary
def hubert_labels(
    train: str = typer.Option(..., help="Train split: a fairseq .tsv (or any input: directory, list, JSONL). The k-means is fitted on it."),
    valid: Optional[List[str]] = typer.Option(None, help="Other splits labelled with the SAME k-means (repeatable), e.g. valid.tsv."),
    id_column: Optional[str] = ID_COLUMN,
    encoder: str = typer.Option(..., "--encoder", "-e", help="'mfcc' (iteration 1), or the SSL model of the previous iteration (hub id, directory or fairseq .pt)."),
    layers: Optional[str] = typer.Option(None, "--layers", "-l", help="SSL layer (fairseq's 1-based output layer = hidden_states index), e.g. 6 or 9."),
    layer: Optional[str] = LAYER_ALIAS,
    k: int = typer.Option(..., "-k", help="Clusters: 100 for MFCC, 500 for SSL layers in the HuBERT recipe."),
    out: Path = typer.Option(..., "--out", "-o", help="Label directory: <split>.km, dict.km.txt, labels.json (+ tokenizer/, units/)."),
    percent: Optional[float] = typer.Option(None, help="Fit on a random PERCENT (0-100) of the train utterances; fairseq's README uses 10 (its --percent 0.1)."),
    max_frames: int = typer.Option(500_000, help="Frames kept for fitting: a uniform sample of all frames seen."),
    seed: int = typer.Option(0, help="Seed of the sampling and of k-means++."),
    device: str = DEVICE,
    workers: int = WORKERS,
    engine: str = ENGINE,
    ray_address: Optional[str] = RAY_ADDRESS,
    actors: Optional[int] = ACTORS,
    quiet: bool = QUIET,
):
    """HuBERT training targets: fit ONE k-means on train, label every split with it, write fairseq's <split>.km + dict.km.txt, and check label counts against audio lengths.

    Resumable: a re-run keeps the fitted k-means and the finished shards. Prints the label rate to put in the training config (task.label_rate: 100 for MFCC, 50 for SSL layers). Utterances whose audio and label durations differ by more than 0.1 s (fairseq's check) are reported, with exit code 1."""
    from ..corpus.labels import LabelsFailed, name_splits
    from ..corpus.labels import hubert_labels as run_labels

    chosen = either("--layers", layers, "--layer", layer)
    if encoder != "mfcc" and chosen is None:
        raise typer.BadParameter("--layers is needed for an SSL encoder")
    job_engine = make_engine(engine, ray_address, actors, device)
    names = name_splits([train, *(valid or [])])
    splits = {name: collect_inputs([given], id_column) for name, given in names.items()}
    manifests = {name: Path(given) if given.endswith(".tsv") else None for name, given in names.items()}
    enc = load_encoder(encoder, chosen, device if job_engine is None else "cpu", None)
    try:
        report = run_labels(splits, enc, k, out, fit_split=next(iter(splits)), tsv=manifests, percent=percent,
                            max_frames=max_frames, seed=seed, workers=workers, engine=job_engine,
                            stage=lambda label, rate: JobProgress(err, rate, label, quiet))
    except LabelsFailed as error:
        say(str(error), label="error:")
        list_failures(error.errors)
        raise typer.Exit(EXIT_FILES_FAILED) from None
    bad = print_label_checks(report.checks)
    say(f"wrote {', '.join(Path(f).name for f in report.files)} to {out}; k-means "
        f"{'fitted on' if report.refitted else 'kept from an earlier run on'} {next(iter(splits))} ({report.tokenizer})")
    say(f"label rate: {report.label_rate:g} Hz -> set task.label_rate={report.label_rate:g}, "
        f"task.labels=[km], task.label_dir={out} (dict.km.txt has K={report.k})")
    if bad:
        raise typer.Exit(EXIT_FILES_FAILED)


def print_label_checks(checks) -> int:
    """Print fairseq-style label length checks; the number of mismatched utterances."""
    bad = 0
    for check in checks:
        say(f"{check.split}: {check.utterances} utterances, {check.labels} labels at {check.label_rate:g} Hz; "
            f"{len(check.mismatches)} differ from their audio by more than 0.1 s", style="yellow" if check.mismatches else None)
        for m in check.mismatches[:10]:
            say(f"  {m.id}: audio {m.audio_seconds:.3f} s, labels {m.label_seconds:.3f} s")
        if len(check.mismatches) > 10:
            say(f"  ... and {len(check.mismatches) - 10} more")
        bad += len(check.mismatches)
    return bad


eval_app = typer.Typer(help="Measure tokens: teacher quality against phones, codebook statistics, label lengths, "
                       "resynthesis quality, speech recognition.", no_args_is_help=True)


@eval_app.command("purity")
@boundary
def eval_purity(
    corpus: str = CORPUS,
    alignments: Path = typer.Option(..., "--alignments", "-a", help="Frame-level phones: fairseq's tsv (uid<TAB>ph,ph,...), an MFA .TextGrid, or a directory of them."),
    stream: Optional[str] = typer.Option(None, help="Stream to measure (default: the only one)."),
    phone_rate: float = typer.Option(100.0, help="Frame rate of the phone labels (fairseq's are 100 Hz); units are brought to it."),
    keep_stress: bool = typer.Option(False, "--keep-stress", help="Keep stress digits (AH0); fairseq removes them."),
    tier: Optional[str] = typer.Option(None, help="TextGrid tier with the phones (default: phones)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
):
    """Phone purity, cluster purity and PNMI of units, as fairseq's measure_teacher_quality.py defines them."""
    from ..corpus.evaluate import purity

    q = purity(corpus, alignments, stream, phone_rate, keep_stress, tier)
    if as_json:
        typer.echo(json.dumps(q.as_dict()))
        return
    table = Table(title=f"teacher quality of {corpus}", show_header=False)
    for name, value in [
        ("phone purity", f"{q.phone_purity:.4f}"), ("cluster purity", f"{q.cluster_purity:.4f}"),
        ("PNMI = I(phone; unit) / H(phone)", f"{q.pnmi:.4f}"), ("H(phone), nats", f"{q.phone_entropy:.4f}"),
        ("H(unit), nats", f"{q.unit_entropy:.4f}"), ("frames", f"{q.frames} at {phone_rate:g} Hz"),
        ("phones / units seen", f"{q.phones} / {q.units}"),
        ("utterances", f"{q.utterances}" + (f" ({q.missing} aligned but not tokenized)" if q.missing else "")),
        ("frame difference", f"{q.frame_difference} (phone vs unit frames, summed over utterances)"),
    ]:
        table.add_row(name, value)
    Console(soft_wrap=True).print(table)


@eval_app.command("stats")
@boundary
def eval_stats(
    corpus: str = CORPUS,
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
):
    """Per stream: codebook usage, unit entropy and perplexity, tokens per second and bitrate."""
    from ..corpus.evaluate import stats

    rows = stats(corpus)
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row.as_dict()))
        return
    table = Table(title=f"units of {corpus}")
    for name in ("stream", "K", "used", "entropy", "perplexity", "tokens/s", "bitrate: log2 K", "bitrate: entropy"):
        table.add_column(name, no_wrap=True)
    for r in rows:
        table.add_row(r.stream, str(r.k), f"{r.used} ({100 * r.usage:.1f}%)", f"{r.entropy_bits:.3f} bits",
                      f"{r.perplexity:.1f}", f"{r.tokens_per_second:.2f}", f"{r.nominal_bitrate:.0f} bit/s",
                      f"{r.entropy_bitrate:.0f} bit/s")
    Console(width=max(120, Console().width)).print(table)


@eval_app.command("asr")
@boundary
def eval_asr(
    model: str = typer.Argument(..., metavar="MODEL", help="A CTC model (transformers *ForCTC directory or hub id) with its processor."),
    tsv: Path = typer.Argument(..., metavar="TSV", help="fairseq manifest of the utterances."),
    references: Path = typer.Argument(..., metavar="LTR", help="Their transcripts, a line each: fairseq letters (.ltr, `|` ends a word) or words (.wrd)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write each utterance's reference, hypothesis and word errors here (JSON lines)."),
    device: str = DEVICE,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a line."),
):
    """Word and character error rates of a CTC model's greedy transcripts (jiwer)."""
    from ..train.asr import evaluate_asr

    quiet_transformers()
    result = evaluate_asr(model, tsv, references, device)
    if out is not None:
        out.write_text("".join(json.dumps(row) + "\n" for row in result.utterances))
    if as_json:
        typer.echo(json.dumps({"wer": result.wer, "cer": result.cer, "utterances": len(result.utterances)}))
        return
    say(f"WER {100 * result.wer:.2f}%  CER {100 * result.cer:.2f}%  ({len(result.utterances)} utterances)")


@eval_app.command("labels")
@boundary
def eval_labels(
    tsv: Path = typer.Argument(..., metavar="TSV", help="fairseq manifest (root line, then path<TAB>num_samples)."),
    km: Path = typer.Argument(..., metavar="KM", help="Its labels: one line of units per utterance, in the .tsv's order."),
    label_rate: float = typer.Option(..., help="Labels per second: 100 for MFCC, 50 for SSL layers."),
    sample_rate: int = typer.Option(16000, help="Sample rate of the .tsv's sample counts."),
):
    """Check label counts against audio lengths as fairseq's verify_label_lengths does (0.1 s tolerance); exit 1 on any mismatch."""
    from ..corpus.labels import check_km_against_tsv

    for path in (tsv, km):
        if not path.is_file():
            raise InputError(f"{path}: no such file")
    if print_label_checks([check_km_against_tsv(tsv, km, label_rate, sample_rate)]):
        raise typer.Exit(EXIT_FILES_FAILED)


def register(app: typer.Typer) -> None:
    app.command("hubert-labels")(hubert_labels)
    app.add_typer(eval_app, name="eval")
