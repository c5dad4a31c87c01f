"""The `speechtok` command line."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(
    help="speechtok: speech -> SSL features, semantic units and codec tokens.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)


def _layers(value: Optional[str]) -> Optional[List[int]]:
    if not value:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated layer numbers like 7,23, got {value!r}") from None


def _quiet_transformers() -> None:
    """transformers' own "Loading weights" bar would interleave with ours."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def _load(tokenizer: str, layers: Optional[str], device: str, dtype: Optional[str],
          n_quantizers: Optional[int] = None, bandwidth: Optional[float] = None):
    import speechtok

    _quiet_transformers()
    options = {"device": device}
    if dtype:
        options["dtype"] = dtype
    if n_quantizers is not None:
        options["n_quantizers"] = n_quantizers
    if bandwidth is not None:
        options["bandwidth"] = bandwidth
    try:
        return speechtok.load(tokenizer, layers=_layers(layers), **options)
    except (KeyError, ValueError, FileNotFoundError, OSError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None


_N_QUANTIZERS = typer.Option(None, "--n-quantizers", help="Codecs: codebooks to keep (default: all for DAC, 8 for EnCodec and Mimi).")
_BANDWIDTH = typer.Option(None, help="Codecs: choose the codebook count by bitrate in kbps instead, e.g. 6.")


@app.command()
def encode(
    files: List[Path] = typer.Argument(..., help="Audio files (anything libsndfile reads: wav, flac, ogg, mp3)."),
    tokenizer: str = typer.Option(..., "--tokenizer", "-t", help="Tokenizer directory or preset name (see `speechtok presets`)."),
    layers: Optional[str] = typer.Option(None, help="Layers of a multi-layer preset, e.g. 7,23 (default: all)."),
    style: str = typer.Option("fairseq", help="Text form: fairseq ('12 7 93'), speechgpt ('<12><7>'), spiritlm ('[Hu12]')."),
    dedup: bool = typer.Option(False, "--dedup", help="Merge repeated units (per stream)."),
    n_quantizers: Optional[int] = _N_QUANTIZERS,
    bandwidth: Optional[float] = _BANDWIDTH,
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, ..."),
    dtype: Optional[str] = typer.Option(None, help="float32 (default), bfloat16 or float16."),
):
    """Print the units of each file: `path<TAB>units`, one tab-separated column per stream.

    A file that cannot be read is reported on stderr with the reason; the others are still encoded, and the exit code is 1."""
    from .audio import AudioError

    tok = _load(tokenizer, layers, device, dtype, n_quantizers, bandwidth)
    waves, good, failed = [], [], 0
    for path in files:
        try:
            waves.append(tok.encoder.load(path))
            good.append(path)
        except AudioError as error:
            err.print(f"[red]skipped[/red] {error}")
            failed += 1
    total = sum(len(w) for w in waves)
    with Progress(TextColumn("encoding"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeRemainingColumn(), console=err, transient=True, disable=total < 60 * tok.sample_rate) as bar:
        task = bar.add_task("encode", total=total)
        all_units = tok.encode_waves(waves, progress=lambda n: bar.advance(task, n))
    for path, units in zip(good, all_units):
        columns = []
        for stream in units.streams:
            one = units.select(stream)
            columns.append((one.dedup() if dedup else one).to_text(style))
        sys.stdout.write(f"{path}\t" + "\t".join(columns) + "\n")
    if failed:
        raise typer.Exit(1)


def _utterances(inputs: List[str]):
    from .corpus import InputError, collect

    try:
        utterances = collect(inputs)
    except (InputError, OSError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    if not utterances:
        err.print("[red]error:[/red] the inputs name no audio files")
        raise typer.Exit(2)
    return utterances


def _run_job(label: str, sample_rate: int, quiet: bool, out: Path, run) -> None:
    """Run a corpus job with a progress bar, print its summary, exit non-zero if any file failed."""
    from .corpus import InputError, JobMismatch, UtteranceFailed
    from .corpus.progress import JobProgress, human_bytes

    try:
        with JobProgress(err, sample_rate, label, quiet) as meter:
            result = run(meter.start, meter.advance)
    except (JobMismatch, InputError) as error:  # a different job in OUT; a bad --rank/--nshard
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    except UtteranceFailed as error:
        err.print(f"[red]stopped (--strict):[/red] {error}")
        raise typer.Exit(1) from None
    hours = result.samples / sample_rate / 3600
    if not quiet:
        done = f"{result.ok} files ok, {result.failed} failed this run"
        if result.skipped_shards:
            done += f" ({result.skipped_shards} finished shards kept from an earlier run)"
        err.print(f"{label}: {done}; {hours:.3f} h of audio in {result.seconds:.1f} s "
                  f"({hours * 3600 / max(result.seconds, 1e-9):.1f}x realtime); "
                  f"{len(result.shards)} shards, {human_bytes(result.bytes)} in {out}")
    if result.errors:
        err.print(f"[red]{len(result.errors)} files failed[/red] (all listed in {out}/errors*.jsonl):")
        for e in result.errors[:10]:
            err.print(f"  {e['id']} ({e['path']}): {e['reason']}")
        if len(result.errors) > 10:
            err.print(f"  ... and {len(result.errors) - 10} more")
        raise typer.Exit(1)


_INPUTS = typer.Argument(..., help="Audio files, directories, globs, .txt lists, fairseq .tsv or JSONL manifests.")
_BATCH_SECONDS = typer.Option(None, help="Seconds of padded audio per batch (default: 200 on GPU; 0 = one file at a time, on CPU).")
_DEVICE = typer.Option("cpu", help="cpu, cuda, cuda:1, ...")
_DTYPE = typer.Option(None, help="float32 (default), bfloat16 or float16.")
_WORKERS = typer.Option(4, help="Threads reading and resampling audio ahead of the encoder.")
_RANK = typer.Option(0, help="This process's part of the corpus, 0..nshard-1 (fairseq's rank).")
_NSHARD = typer.Option(1, help="Number of independent processes the corpus is split across.")
_SHARD_SIZE = typer.Option(1000, help="Utterances per output file (the unit of resumption).")
_STRICT = typer.Option(False, "--strict", help="Stop at the first bad file instead of recording it and going on.")
_QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar or summary (errors are still printed).")


@app.command()
def tokenize(
    inputs: List[str] = _INPUTS,
    tokenizer: str = typer.Option(..., "--tokenizer", "-t", help="Tokenizer directory (from fit-kmeans / import), preset name (`speechtok presets`: k-means or codec), or a codec directory / DAC .pth."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory: Parquet shards, manifest.json, errors.jsonl."),
    layers: Optional[str] = typer.Option(None, help="Layers of a multi-layer preset, e.g. 7,23 (default: all)."),
    dedup: bool = typer.Option(False, "--dedup", help="Merge repeated units per stream; adds <stream>_durations."),
    bpe: Optional[Path] = typer.Option(None, "--bpe", help="A unit BPE directory (`speechtok bpe train`): adds <stream>_bpe, the BPE ids of its stream."),
    n_quantizers: Optional[int] = _N_QUANTIZERS,
    bandwidth: Optional[float] = _BANDWIDTH,
    batch_seconds: Optional[float] = _BATCH_SECONDS,
    device: str = _DEVICE,
    dtype: Optional[str] = _DTYPE,
    workers: int = _WORKERS,
    strict: bool = _STRICT,
    rank: int = _RANK,
    nshard: int = _NSHARD,
    shard_size: int = _SHARD_SIZE,
    quiet: bool = _QUIET,
):
    """Tokenize a corpus into Parquet shards: one row per utterance with its units.

    Resumable: run the same command again after a crash and finished shards are kept. Bad files are recorded in errors.jsonl and the job goes on; the exit code is 1 if any failed."""
    from .bpe import UnitBPE
    from .corpus.tokenize import check_bpe, tokenize_corpus

    utterances = _utterances(inputs)
    tok = _load(tokenizer, layers, device, dtype, n_quantizers, bandwidth)
    unit_bpe = None
    if bpe is not None:
        try:
            unit_bpe = UnitBPE.load(bpe)
            check_bpe(tok, unit_bpe)
        except ValueError as error:
            err.print(f"[red]error:[/red] {error}")
            raise typer.Exit(2) from None
    if batch_seconds is not None:  # 0 (one file per batch) is a choice too
        tok.batch_seconds = batch_seconds
    _run_job("tokenize", tok.sample_rate, quiet, out, lambda start, advance: tokenize_corpus(
        utterances, tok, out, dedup=dedup, workers=workers, strict=strict, rank=rank, nshard=nshard,
        shard_size=shard_size, dtype=dtype, split=_split_name(inputs), bpe=unit_bpe, on_start=start,
        on_progress=advance))


def _encoder(encoder: str, layers: Optional[str], device: str, dtype: Optional[str]):
    from .corpus.imports import build_encoder

    _quiet_transformers()
    options = {"device": device, **({"dtype": dtype} if dtype else {})}
    try:
        return build_encoder(encoder, _layers(layers) or [], **options)
    except (ValueError, FileNotFoundError, OSError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None


def _split_name(inputs: List[str]) -> Optional[str]:
    """fairseq names label files after the manifest: train.tsv -> train.km."""
    return Path(inputs[0]).stem if len(inputs) == 1 and inputs[0].endswith(".tsv") else None


@app.command("fit-kmeans")
def fit_kmeans(
    inputs: List[str] = _INPUTS,
    encoder: str = typer.Option(..., "--encoder", "-e", help="SSL model (hub id, local directory, or original fairseq / WavLM / s3prl checkpoint file), or 'mfcc'."),
    layer: Optional[str] = typer.Option(None, "--layer", "-l", help="Layer(s) to cluster, e.g. 6 or 7,12,18 (one k-means each, one pass over the audio)."),
    k: int = typer.Option(..., "-k", help="Number of clusters."),
    out: Path = typer.Option(..., "--out", "-o", help="Tokenizer directory to write (for `tokenize -t` and speechtok.load)."),
    percent: Optional[float] = typer.Option(None, help="Use a random PERCENT of the utterances (fairseq's --percent, here 0-100)."),
    max_frames: int = typer.Option(500_000, help="Frames kept per layer: a uniform sample of all frames seen (bounds memory)."),
    iters: int = typer.Option(25, help="Most Lloyd iterations (stops earlier once converged)."),
    seed: int = typer.Option(0, help="Seed of the utterance and frame sampling and of k-means++."),
    batch_seconds: Optional[float] = _BATCH_SECONDS,
    device: str = typer.Option("cpu", help="cpu, cuda, ... (encoding and k-means)."),
    dtype: Optional[str] = typer.Option(None, help="float32 (default), bfloat16 or float16."),
    workers: int = _WORKERS,
    strict: bool = _STRICT,
    quiet: bool = _QUIET,
):
    """Fit k-means on an encoder's features of a corpus and write a tokenizer directory.

    Frames are sampled while the audio streams through, so memory is bounded by --max-frames, not by the corpus size. Bad files are skipped and listed (unless --strict)."""
    from .corpus.fit import fit_kmeans_corpus
    from .corpus.progress import JobProgress

    utterances = _utterances(inputs)
    enc = _encoder(encoder, layer, device, dtype)
    try:
        with JobProgress(err, enc.sample_rate, "features", quiet) as meter:
            tok, report = fit_kmeans_corpus(
                utterances, enc, k, out, percent=percent, max_frames=max_frames, iters=iters, seed=seed,
                batch_seconds=batch_seconds, workers=workers, strict=strict,
                on_start=meter.start, on_progress=meter.advance)
    except ValueError as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2 if not strict else 1) from None
    if not quiet:
        for stream, km in tok.quantizers.items():
            err.print(f"{stream}: K={km.k} fitted on {report.frames_used[stream]} of {report.frames_seen[stream]} "
                      f"frames from {report.files} files; inertia {km.info['inertia']:.6g}")
        err.print(f"wrote {out} (use it with: speechtok tokenize ... -t {out})")
    if report.failed:
        err.print(f"[red]{len(report.failed)} files failed[/red] and were skipped:")
        for name, reason in report.failed[:10]:
            err.print(f"  {name}: {reason}")
        raise typer.Exit(1)


@app.command()
def extract(
    inputs: List[str] = _INPUTS,
    encoder: str = typer.Option(..., "--encoder", "-e", help="SSL model (hub id, local directory, or original fairseq / WavLM / s3prl checkpoint file), or 'mfcc'."),
    layers: Optional[str] = typer.Option(None, "--layers", "-l", help="Layers to extract, e.g. 6,9."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
    fmt: str = typer.Option("parquet", "--format", help="parquet (shards, resumable) or fairseq ({split}_{rank}_{nshard}.npy + .len per layer)."),
    split: Optional[str] = typer.Option(None, help="fairseq file prefix (default: the .tsv's name, else 'data')."),
    batch_seconds: Optional[float] = _BATCH_SECONDS,
    device: str = _DEVICE,
    dtype: Optional[str] = _DTYPE,
    workers: int = _WORKERS,
    strict: bool = _STRICT,
    rank: int = _RANK,
    nshard: int = _NSHARD,
    shard_size: int = _SHARD_SIZE,
    quiet: bool = _QUIET,
):
    """Extract continuous features (SSL layers or MFCC) of a corpus."""
    from .corpus import InputError, UtteranceFailed
    from .corpus.extract import extract_corpus, extract_fairseq
    from .corpus.progress import JobProgress

    if fmt not in ("parquet", "fairseq"):
        raise typer.BadParameter(f"--format must be parquet or fairseq, not {fmt!r}")
    utterances = _utterances(inputs)
    enc = _encoder(encoder, layers, device, dtype)
    if fmt == "parquet":
        _run_job("extract", enc.sample_rate, quiet, out, lambda start, advance: extract_corpus(
            utterances, enc, out, batch_seconds=batch_seconds, workers=workers, strict=strict, rank=rank,
            nshard=nshard, shard_size=shard_size, on_start=start, on_progress=advance))
        return
    try:
        with JobProgress(err, enc.sample_rate, "extract", quiet) as meter:
            written = extract_fairseq(utterances, enc, out, split or _split_name(inputs) or "data",
                                      batch_seconds=batch_seconds, workers=workers, rank=rank, nshard=nshard,
                                      on_start=meter.start, on_progress=meter.advance)
    except (UtteranceFailed, InputError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    if not quiet:
        err.print("wrote " + ", ".join(str(p) for p in written.values()) + " (+ .len)")


@app.command()
def export(
    out: Path = typer.Argument(..., help="A directory written by `speechtok tokenize`."),
    fmt: str = typer.Option(..., "--format", "-f", help="km (fairseq labels + dict), txt, jsonl or npy (one file per utterance)."),
    dest: Path = typer.Option(..., "--dest", "-o", help="Directory to write into."),
    split: Optional[str] = typer.Option(None, help="File prefix (default: the tokenized .tsv's name, else 'data')."),
    style: str = typer.Option("fairseq", help="Text style for txt: fairseq, speechgpt, spiritlm."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Write .km even though some utterances failed (lines then skip them)."),
):
    """Write a tokenized corpus in the formats other tools read (rows in input order)."""
    from .corpus.export import ExportError
    from .corpus.export import export as run_export

    try:
        written = run_export(out, fmt, dest, split=split, style=style, allow_missing=allow_missing)
    except ExportError as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    err.print(f"wrote {len(written)} files to {dest}")


@app.command("hubert-labels")
def hubert_labels(
    train: str = typer.Option(..., help="Train split: a fairseq .tsv (or any input: directory, list, JSONL). The k-means is fitted on it."),
    valid: Optional[List[str]] = typer.Option(None, help="Other splits labelled with the SAME k-means (repeatable), e.g. valid.tsv."),
    encoder: str = typer.Option(..., "--encoder", "-e", help="'mfcc' (iteration 1), or the SSL model of the previous iteration (hub id, directory or fairseq .pt)."),
    layer: Optional[int] = typer.Option(None, "--layer", "-l", help="SSL layer (fairseq's 1-based output layer = hidden_states index), e.g. 6 or 9."),
    k: int = typer.Option(..., "-k", help="Clusters: 100 for MFCC, 500 for SSL layers in the HuBERT recipe."),
    out: Path = typer.Option(..., "--out", "-o", help="Label directory: <split>.km, dict.km.txt, labels.json (+ tokenizer/, units/)."),
    percent: Optional[float] = typer.Option(None, help="Fit on a random PERCENT (0-100) of the train utterances; fairseq's README uses 10 (its --percent 0.1)."),
    max_frames: int = typer.Option(500_000, help="Frames kept for fitting: a uniform sample of all frames seen."),
    seed: int = typer.Option(0, help="Seed of the sampling and of k-means++."),
    device: str = _DEVICE,
    workers: int = _WORKERS,
    quiet: bool = _QUIET,
):
    """HuBERT training targets: fit ONE k-means on train, label every split with it, write fairseq's <split>.km + dict.km.txt, and check label counts against audio lengths.

    Resumable: a re-run keeps the fitted k-means and the finished shards. Prints the label rate to put in the training config (task.label_rate: 100 for MFCC, 50 for SSL layers). Utterances whose audio and label durations differ by more than 0.1 s (fairseq's check) are reported, with exit code 1."""
    from .corpus import InputError
    from .corpus.labels import LabelsFailed
    from .corpus.labels import hubert_labels as run_labels
    from .corpus.progress import JobProgress

    if encoder != "mfcc" and layer is None:
        raise typer.BadParameter("--layer is needed for an SSL encoder")
    splits, manifests = {}, {}
    for given in [train, *(valid or [])]:
        name = _split_name([given]) or ("train" if not splits else "valid" if len(splits) == 1 else f"valid{len(splits) - 1}")
        if name in splits:
            raise typer.BadParameter(f"two splits are named {name!r}; give .tsv files with different names")
        splits[name] = _utterances([given])
        manifests[name] = Path(given) if given.endswith(".tsv") else None
    enc = _encoder(encoder, None if layer is None else str(layer), device, None)
    try:
        report = run_labels(splits, enc, k, out, fit_split=next(iter(splits)), tsv=manifests, percent=percent,
                            max_frames=max_frames, seed=seed, workers=workers,
                            stage=lambda label, rate: JobProgress(err, rate, label, quiet))
    except LabelsFailed as error:
        err.print(f"[red]error:[/red] {error}")
        for e in error.errors[:10]:
            err.print(f"  {e['id']} ({e['path']}): {e['reason']}")
        raise typer.Exit(1) from None
    except (InputError, ValueError, OSError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    bad = _print_label_checks(report.checks)
    err.print(f"wrote {', '.join(Path(f).name for f in report.files)} to {out}; k-means {'fitted on' if report.refitted else 'kept from an earlier run on'} "
              f"{next(iter(splits))} ({report.tokenizer})", soft_wrap=True, markup=False)
    err.print(f"label rate: {report.label_rate:g} Hz -> set task.label_rate={report.label_rate:g}, "
              f"task.labels=[km], task.label_dir={out} (dict.km.txt has K={report.k})", soft_wrap=True, markup=False)
    if bad:
        raise typer.Exit(1)


def _print_label_checks(checks) -> int:
    """Print fairseq-style label length checks; the number of mismatched utterances."""
    bad = 0
    for check in checks:
        line = (f"{check.split}: {check.utterances} utterances, {check.labels} labels at {check.label_rate:g} Hz; "
                f"{len(check.mismatches)} differ from their audio by more than 0.1 s")
        err.print(line, style="yellow" if check.mismatches else None, soft_wrap=True, markup=False)
        for m in check.mismatches[:10]:
            err.print(f"  {m.id}: audio {m.audio_seconds:.3f} s, labels {m.label_seconds:.3f} s", soft_wrap=True,
                      markup=False)
        if len(check.mismatches) > 10:
            err.print(f"  ... and {len(check.mismatches) - 10} more")
        bad += len(check.mismatches)
    return bad


eval_app = typer.Typer(help="Measure units: teacher quality against phones, codebook statistics, label lengths.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("purity")
def eval_purity(
    tokens: Path = typer.Argument(..., help="A directory written by `speechtok tokenize`."),
    alignments: Path = typer.Option(..., "--alignments", "-a", help="Frame-level phones: fairseq's tsv (uid<TAB>ph,ph,...), an MFA .TextGrid, or a directory of them."),
    stream: Optional[str] = typer.Option(None, help="Stream to measure (default: the only one)."),
    phone_rate: float = typer.Option(100.0, help="Frame rate of the phone labels (fairseq's are 100 Hz); units are brought to it."),
    keep_stress: bool = typer.Option(False, "--keep-stress", help="Keep stress digits (AH0); fairseq removes them."),
    tier: Optional[str] = typer.Option(None, help="TextGrid tier with the phones (default: phones)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
):
    """Phone purity, cluster purity and PNMI of units, as fairseq's measure_teacher_quality.py defines them."""
    from .alignments import AlignmentError
    from .corpus.evaluate import purity
    from .corpus.export import ExportError

    try:
        quality = purity(tokens, alignments, stream, phone_rate, keep_stress, tier)
    except (ExportError, AlignmentError, ValueError, OSError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(quality.as_dict()))
        return
    q = quality
    table = Table(title=f"teacher quality of {tokens}", show_header=False)
    for name, value in [
        ("phone purity", f"{q.phone_purity:.4f}"), ("cluster purity", f"{q.cluster_purity:.4f}"),
        ("PNMI = I(phone; unit) / H(phone)", f"{q.pnmi:.4f}"), ("H(phone), nats", f"{q.phone_entropy:.4f}"),
        ("H(unit), nats", f"{q.unit_entropy:.4f}"), ("frames", f"{q.frames} at {phone_rate:g} Hz"),
        ("phones / units seen", f"{q.phones} / {q.units}"),
        ("utterances", f"{q.utterances}" + (f" ({q.missing} aligned but not tokenized)" if q.missing else "")),
        ("frame difference", f"{q.frame_difference} (phone vs unit frames, summed over utterances)"),
    ]:
        table.add_row(name, value)
    Console().print(table)


@eval_app.command("stats")
def eval_stats(
    tokens: Path = typer.Argument(..., help="A directory written by `speechtok tokenize`."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
):
    """Per stream: codebook usage, unit entropy and perplexity, tokens per second and bitrate."""
    from .corpus.evaluate import stats
    from .corpus.export import ExportError

    try:
        rows = stats(tokens)
    except (ExportError, ValueError, OSError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row.as_dict()))
        return
    table = Table(title=f"units of {tokens}")
    for name in ("stream", "K", "used", "entropy", "perplexity", "tokens/s", "bitrate: log2 K", "bitrate: entropy"):
        table.add_column(name, no_wrap=True)
    for r in rows:
        table.add_row(r.stream, str(r.k), f"{r.used} ({100 * r.usage:.1f}%)", f"{r.entropy_bits:.3f} bits",
                      f"{r.perplexity:.1f}", f"{r.tokens_per_second:.2f}", f"{r.nominal_bitrate:.0f} bit/s",
                      f"{r.entropy_bitrate:.0f} bit/s")
    Console(width=max(120, Console().width)).print(table)


@eval_app.command("labels")
def eval_labels(
    tsv: Path = typer.Argument(..., help="fairseq manifest (root line, then path<TAB>num_samples)."),
    km: Path = typer.Argument(..., help="Its labels: one line of units per utterance, in the .tsv's order."),
    label_rate: float = typer.Option(..., help="Labels per second: 100 for MFCC, 50 for SSL layers."),
    sample_rate: int = typer.Option(16000, help="Sample rate of the .tsv's sample counts."),
):
    """Check label counts against audio lengths as fairseq's verify_label_lengths does (0.1 s tolerance); exit 1 on any mismatch."""
    from .corpus import InputError
    from .corpus.labels import check_km_against_tsv

    try:
        check = check_km_against_tsv(tsv, km, label_rate, sample_rate)
    except (InputError, OSError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    if _print_label_checks([check]):
        raise typer.Exit(1)


bpe_app = typer.Typer(help="Byte-pair encoding of unit sequences (SentencePiece).", no_args_is_help=True)
app.add_typer(bpe_app, name="bpe")


@bpe_app.command("train")
def bpe_train(
    tokens: Path = typer.Argument(..., help="A directory written by `speechtok tokenize` (BPE is learned on its stored units; deduplicated if it was run with --dedup)."),
    vocab_size: int = typer.Option(..., "--vocab-size", help="BPE pieces in all: every unit seen + 256 byte pieces + 3 specials + merges."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write: bpe.model (SentencePiece) + bpe.json."),
    stream: Optional[str] = typer.Option(None, help="Stream to learn on (default: the only one)."),
):
    """Train a BPE over the unit sequences of a tokenized corpus; use it with `speechtok tokenize --bpe`.

    Units become characters by a fixed, documented mapping (CJK ideographs, reversible for K up to 65,536); decoding gives the units back exactly."""
    import numpy as np

    from .bpe import UnitBPE
    from .corpus.export import ExportError, choose_stream, read_rows

    try:
        table, manifests = read_rows(tokens)
        stream = choose_stream(manifests[0]["streams"], stream, tokens)
        k = manifests[0]["vocab_sizes"][manifests[0]["streams"].index(stream)]
        sequences = [np.asarray(c) for c in table.column(stream).to_pylist()]
        bpe = UnitBPE.train(sequences, k, vocab_size, stream)
    except (ExportError, ValueError, OSError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    bpe.save_pretrained(out)
    units = sum(len(c) for c in sequences)
    pieces = sum(len(bpe.encode(c)) for c in sequences)
    err.print(f"wrote {out}: {bpe.vocab_size} pieces over {stream} (K={k}); the corpus's {units} units are "
              f"{pieces} pieces ({units / max(pieces, 1):.2f} units per piece)")


def _bpe_lines(bpe_dir: Path, ids: Optional[List[int]], invert: bool) -> None:
    """Apply a unit BPE (or its inverse) to the ids given, or to each stdin line of ids."""
    from .bpe import UnitBPE

    try:
        bpe = UnitBPE.load(bpe_dir)
        lines = [" ".join(map(str, ids))] if ids else sys.stdin.read().splitlines()
        for line in lines:
            values = [int(v) for v in line.split()]
            out = bpe.decode(values) if invert else bpe.encode(values)
            typer.echo(" ".join(map(str, out.tolist())))
    except ValueError as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None


@bpe_app.command("encode")
def bpe_encode(
    bpe_dir: Path = typer.Argument(..., help="A directory written by `speechtok bpe train`."),
    units: Optional[List[int]] = typer.Argument(None, help="Unit ids; without them, each line of stdin is one sequence."),
):
    """Units -> BPE piece ids (space-separated, a line per sequence)."""
    _bpe_lines(bpe_dir, units, invert=False)


@bpe_app.command("decode")
def bpe_decode(
    bpe_dir: Path = typer.Argument(..., help="A directory written by `speechtok bpe train`."),
    ids: Optional[List[int]] = typer.Argument(None, help="BPE piece ids; without them, each line of stdin is one sequence."),
):
    """BPE piece ids -> the units they stand for (exactly the units that were encoded)."""
    _bpe_lines(bpe_dir, ids, invert=True)


@app.command()
def convert(
    checkpoint: Path = typer.Argument(..., help="fairseq wav2vec2 / HuBERT (.pt, pre-trained or fine-tuned), Microsoft WavLM (.pt) or s3prl converted checkpoint."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write: config.json, model.safetensors, preprocessor_config.json."),
):
    """Convert an original SSL checkpoint into a transformers model directory.

    Not needed to use one: every --encoder option (and SSLEncoder.from_pretrained) takes the checkpoint file itself and converts it on the fly. The checkpoint is read without running code from it (an allow-list of the types such files hold); weights and config fields that do not map are an error naming them."""
    from .encoders.checkpoints import convert as run_convert

    _quiet_transformers()
    try:
        run_convert(checkpoint, out)
    except (ValueError, FileNotFoundError, OSError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    fields = json.loads((out / "config.json").read_text())
    err.print(f"wrote {out}: {fields['model_type']}, {fields['num_hidden_layers']} layers x {fields['hidden_size']}, "
              f"feature extractor {fields['feat_extract_norm']} norm, "
              f"{'stable' if fields['do_stable_layer_norm'] else 'post'} layer norm")


import_app = typer.Typer(help="Make a speechtok tokenizer from k-means other tools wrote.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("kmeans")
def import_kmeans(
    file: Path = typer.Argument(..., help="scikit-learn k-means (joblib/pickle, e.g. fairseq's km.bin) or centroid .npy [K, D]."),
    encoder: str = typer.Option(..., "--encoder", "-e", help="The SSL model it was fitted on (hub id, directory or original checkpoint file), or 'mfcc'."),
    layer: Optional[int] = typer.Option(None, "--layer", "-l", help="The layer it was fitted on."),
    out: Path = typer.Option(..., "--out", "-o", help="Tokenizer directory to write."),
    vocoder: Optional[Path] = typer.Option(None, help="A fairseq / textlesslib CodeHiFiGAN checkpoint for these units (adds `decode`)."),
    vocoder_config: Optional[Path] = typer.Option(None, help="Its JSON config (default: config.json beside it)."),
):
    """One k-means file + its encoder and layer -> a tokenizer directory."""
    from .corpus.imports import import_kmeans as run_import

    try:
        tok = run_import(file, encoder, layer, out, vocoder=vocoder, vocoder_config=vocoder_config)
    except (ValueError, FileNotFoundError, OSError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    err.print(f"wrote {out}: {tok}")


@import_app.command("speechbrain")
def import_speechbrain(
    source: str = typer.Argument(..., help="SpeechBrain repo: local directory or hub id (e.g. speechbrain/hifigan-wavlm-k1000-LibriTTS)."),
    encoder: str = typer.Option(..., "--encoder", "-e", help="The SSL model its k-means were fitted on, e.g. microsoft/wavlm-large."),
    out: Path = typer.Option(..., "--out", "-o", help="Tokenizer directory to write."),
    layers: Optional[str] = typer.Option(None, help="Only these layers (default: all the repo has)."),
):
    """A SpeechBrain DiscreteSSL k-means repo (kmeans/*_L<n>.pt) -> a tokenizer directory."""
    from .corpus.imports import import_speechbrain as run_import

    try:
        tok = run_import(source, encoder, out, _layers(layers))
    except (ValueError, FileNotFoundError, OSError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    err.print(f"wrote {out}: {tok}")


@app.command()
def info(
    tokenizer: str = typer.Argument(..., help="Tokenizer directory, preset name, or codec directory / DAC .pth."),
    layers: Optional[str] = typer.Option(None, help="Layers of a multi-layer preset, e.g. 7,23."),
    n_quantizers: Optional[int] = _N_QUANTIZERS,
    bandwidth: Optional[float] = _BANDWIDTH,
):
    """Show a tokenizer's encoder, streams, vocabulary sizes, frame rate and bitrate."""
    tok = _load(tokenizer, layers, "cpu", None, n_quantizers, bandwidth)
    config = tok.encoder.config()
    table = Table(title=f"{tokenizer}", show_header=False)
    table.add_row("encoder", str(config.get("model") or config["type"]))
    if config["type"] == "ssl":
        table.add_row("waveform normalisation", str(config["normalize"]))
        table.add_row("chunk", f"{config['chunk_seconds']} s")
    if config["type"] == "codec":
        codec = tok.codec
        table.add_row("codec", f"{codec.family}: {codec.max_quantizers} codebooks of {codec.codebook_size}, "
                               f"{codec.bandwidth_of(1):g} kbps each")
        table.add_row("codebooks used", f"{tok.n_quantizers} (choose with --n-quantizers or --bandwidth)")
        table.add_row("windows", f"{tok.window_seconds:g} s, context {codec.encode_context / codec.sample_rate:.3g} s "
                                 + ("before (causal)" if codec.causal else "each side (exact)"))
        table.add_row("decoder", "yes: `speechtok decode` / tok.decode(units)")
    vocoder = getattr(tok, "vocoder", None)
    if vocoder is not None:
        table.add_row("decoder", f"unit HiFi-GAN, codebook columns = layers {list(vocoder.layers or [])}, "
                                 f"K={vocoder.k}, {vocoder.sample_rate} Hz, {vocoder.hop} samples per frame")
    table.add_row("sample rate", f"{tok.sample_rate} Hz")
    table.add_row("frame rate", f"{tok.frame_rate:g} Hz")
    if len(set(tok.vocab_sizes)) == 1 and len(tok.streams) > 4:
        table.add_row("streams", f"{tok.streams[0]}..{tok.streams[-1]} ({len(tok.streams)} x K={tok.vocab_sizes[0]})")
    else:
        table.add_row("streams", ", ".join(f"{s} (K={k})" for s, k in zip(tok.streams, tok.vocab_sizes)))
    bits = tok.frame_rate * sum(math.log2(k) for k in tok.vocab_sizes)
    table.add_row("bitrate", f"{bits:.0f} bit/s ({bits / 1000:.3g} kbps)"
                  + ("" if config["type"] == "codec" else " before deduplication"))
    Console().print(table)


@app.command()
def decode(
    out: Path = typer.Argument(..., help="A directory written by `speechtok tokenize`."),
    dest: Path = typer.Option(..., "--out", "-o", help="Directory for the audio: <id>.wav per utterance (float WAV at the tokenizer's rate)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", "-t", help="Decode with this tokenizer (default: the one that made the tokens, from the manifest)."),
    batch_seconds: Optional[float] = _BATCH_SECONDS,
    device: str = _DEVICE,
    quiet: bool = _QUIET,
):
    """Turn a tokenized corpus back into audio, with the tokenizer's decoder (a codec's, or the unit vocoder `import speechbrain` brings).

    Resumable: files already written are kept, and each file appears only once complete."""
    from .corpus.decode import decode_corpus, tokenizer_of
    from .corpus.export import ExportError
    from .corpus.progress import JobProgress

    _quiet_transformers()
    try:
        tok = tokenizer_of(out, device) if tokenizer is None else _load(tokenizer, None, device, None)
        if batch_seconds is not None:
            tok.batch_seconds = batch_seconds
        with JobProgress(err, tok.decode_sample_rate, "decode", quiet) as meter:
            result = decode_corpus(out, dest, tok, on_start=meter.start, on_progress=meter.advance)
    except (ExportError, ValueError, FileNotFoundError, OSError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    if not quiet:
        hours = result.samples / tok.decode_sample_rate / 3600
        err.print(f"decode: wrote {result.written} files ({hours:.3f} h) to {dest}"
                  + (f"; {result.skipped} already there" if result.skipped else ""))


@app.command()
def presets():
    """List the published tokenizers that can be loaded by name."""
    from .presets import CODEC_PRESETS, PRESETS

    for p in PRESETS.values():  # plain lines: names are never shortened, and grep works
        layers = ",".join(map(str, p.layers))
        typer.echo(f"{p.name:<28} {p.encoder:<28} layers {layers:<18} K={p.k:<5} {p.description}")
    for c in CODEC_PRESETS.values():
        typer.echo(f"{c.name:<28} {c.model:<28} {'codec':<33} {c.description}")


if __name__ == "__main__":  # pragma: no cover
    app()
