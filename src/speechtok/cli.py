"""The `speechtok` command line."""

from __future__ import annotations

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
    from .corpus.tokenize import tokenize_corpus

    utterances = _utterances(inputs)
    tok = _load(tokenizer, layers, device, dtype, n_quantizers, bandwidth)
    if batch_seconds is not None:  # 0 (one file per batch) is a choice too
        tok.batch_seconds = batch_seconds
    _run_job("tokenize", tok.sample_rate, quiet, out, lambda start, advance: tokenize_corpus(
        utterances, tok, out, dedup=dedup, workers=workers, strict=strict, rank=rank, nshard=nshard,
        shard_size=shard_size, dtype=dtype, split=_split_name(inputs), on_start=start, on_progress=advance))


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
    encoder: str = typer.Option(..., "--encoder", "-e", help="SSL model (hub id or local directory), or 'mfcc'."),
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
    encoder: str = typer.Option(..., "--encoder", "-e", help="SSL model (hub id or local directory), or 'mfcc'."),
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


import_app = typer.Typer(help="Make a speechtok tokenizer from k-means other tools wrote.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("kmeans")
def import_kmeans(
    file: Path = typer.Argument(..., help="scikit-learn k-means (joblib/pickle, e.g. fairseq's km.bin) or centroid .npy [K, D]."),
    encoder: str = typer.Option(..., "--encoder", "-e", help="The SSL model it was fitted on (hub id or directory), or 'mfcc'."),
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
