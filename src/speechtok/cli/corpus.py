"""Corpus commands: `tokenize`, `fit-kmeans`, `extract`, `decode`, `export`."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional

import typer

from ..errors import EXIT_FILES_FAILED, InputError
from .common import (
    ACTORS,
    BANDWIDTH,
    BATCH_SECONDS,
    CORPUS,
    DEVICE,
    DTYPE,
    ENCODER,
    ENGINE,
    ID_COLUMN,
    INPUTS,
    LAYER_ALIAS,
    LAYERS,
    N_QUANTIZERS,
    NSHARD,
    QUIET,
    RANK,
    RAY_ADDRESS,
    SHARD_SIZE,
    STRICT,
    TOKENIZER,
    WORKERS,
    boundary,
    collect_inputs,
    either,
    list_failures,
    load_encoder,
    load_tokenizer,
    make_engine,
    quiet_transformers,
    say,
)
from .progress import JobProgress, human_bytes


def run_job(label: str, sample_rate: int, quiet: bool, out: str, run: Callable) -> None:
    """Run a corpus job with a progress bar, print its summary, exit 1 if any file failed."""
    from .common import err

    with JobProgress(err, sample_rate, label, quiet) as meter:
        result = run(meter.start, meter.advance)
    hours = result.samples / sample_rate / 3600
    if result.redone:
        say(f"{len(result.redone)} finished shards were damaged on disk and were written again: "
            + ", ".join(result.redone), style="yellow")
    if not quiet:
        done = f"{result.ok} files ok, {result.failed} failed this run"
        if result.skipped_shards:
            done += f" ({result.skipped_shards} finished shards kept from an earlier run)"
        say(f"{label}: {done}; {hours:.3f} h of audio in {result.seconds:.1f} s "
            f"({hours * 3600 / max(result.seconds, 1e-9):.1f}x realtime); "
            f"{len(result.shards)} shards, {human_bytes(result.bytes)} in {out}")
    report_failures(result.errors, f"all listed in {out}/errors*.jsonl")


def report_failures(errors: list[dict], where: str) -> None:
    if not errors:
        return
    say(f"{len(errors)} files failed ({where}):", style="red")
    list_failures(errors)
    raise typer.Exit(EXIT_FILES_FAILED)


@boundary
def tokenize(
    inputs: List[str] = INPUTS,
    id_column: Optional[str] = ID_COLUMN,
    tokenizer: str = TOKENIZER,
    out: str = typer.Option(..., "--out", "-o", help="Output directory (or object store URL: s3://bucket/prefix): Parquet shards, manifest.json, errors.jsonl."),
    layers: Optional[str] = typer.Option(None, "--layers", "-l", help="Layers of a multi-layer preset, e.g. 7,23 (default: all)."),
    dedup: bool = typer.Option(False, "--dedup", help="Merge repeated units per stream; adds <stream>_durations."),
    bpe: Optional[Path] = typer.Option(None, "--bpe", help="A unit BPE directory (`speechtok bpe train`): adds <stream>_bpe, the BPE ids of its stream."),
    n_quantizers: Optional[int] = N_QUANTIZERS,
    bandwidth: Optional[float] = BANDWIDTH,
    batch_seconds: Optional[float] = BATCH_SECONDS,
    device: str = DEVICE,
    dtype: Optional[str] = DTYPE,
    workers: int = WORKERS,
    strict: bool = STRICT,
    rank: int = RANK,
    nshard: int = NSHARD,
    shard_size: int = SHARD_SIZE,
    engine: str = ENGINE,
    ray_address: Optional[str] = RAY_ADDRESS,
    actors: Optional[int] = ACTORS,
    quiet: bool = QUIET,
):
    """Tokenize a corpus into Parquet shards: one row per utterance with its units.

    Resumable: run the same command again after a crash and finished shards are kept. Bad files are recorded in errors.jsonl and the job goes on; the exit code is 1 if any failed. With --engine ray, the Ray workers load the tokenizer themselves (on --device), so its directory and the audio must be readable at the same paths on every node."""
    from ..bpe import UnitBPE
    from ..corpus.inputs import split_name
    from ..corpus.tokenize import check_bpe, tokenize_corpus
    from ..runtime.device import batch_seconds as default_or

    job_engine = make_engine(engine, ray_address, actors, device)
    utterances = collect_inputs(inputs, id_column)
    # With Ray, this process only reads the tokenizer's description and writes; the workers encode.
    tok = load_tokenizer(tokenizer, layers, device if job_engine is None else "cpu", dtype, n_quantizers, bandwidth)
    unit_bpe = None
    if bpe is not None:
        unit_bpe = UnitBPE.from_pretrained(bpe)
        check_bpe(tok, unit_bpe)
    # 0 (one file per batch) is a choice too; the default is the encoding device's (with Ray, not
    # that of the CPU copy above), and it decides the windows, so both engines cut the same ones
    tok.batch_seconds = default_or(batch_seconds, device)
    run_job("tokenize", tok.sample_rate, quiet, out, lambda start, advance: tokenize_corpus(
        utterances, tok, out, dedup=dedup, workers=workers, strict=strict, rank=rank, nshard=nshard,
        shard_size=shard_size, dtype=dtype, split=split_name(inputs), bpe=unit_bpe, engine=job_engine, on_start=start,
        on_progress=advance))


@boundary
def fit_kmeans(
    inputs: List[str] = INPUTS,
    id_column: Optional[str] = ID_COLUMN,
    encoder: str = ENCODER,
    layers: Optional[str] = typer.Option(None, "--layers", "-l", help="Layer(s) to cluster, e.g. 6 or 7,12,18 (one k-means each, one pass over the audio)."),
    layer: Optional[str] = LAYER_ALIAS,
    k: int = typer.Option(..., "-k", help="Number of clusters."),
    out: Path = typer.Option(..., "--out", "-o", help="Tokenizer directory to write (for `tokenize -t` and speechtok.load)."),
    percent: Optional[float] = typer.Option(None, help="Use a random PERCENT of the utterances (fairseq's --percent, here 0-100)."),
    max_frames: int = typer.Option(500_000, help="Frames kept per layer: a uniform sample of all frames seen (bounds memory)."),
    iters: int = typer.Option(25, help="Most Lloyd iterations (stops earlier once converged)."),
    seed: int = typer.Option(0, help="Seed of the utterance and frame sampling and of k-means++."),
    batch_seconds: Optional[float] = BATCH_SECONDS,
    device: str = typer.Option("cpu", help="cpu, cuda, ... (encoding and k-means)."),
    dtype: Optional[str] = DTYPE,
    workers: int = WORKERS,
    strict: bool = STRICT,
    engine: str = ENGINE,
    ray_address: Optional[str] = RAY_ADDRESS,
    actors: Optional[int] = ACTORS,
    quiet: bool = QUIET,
):
    """Fit k-means on an encoder's features of a corpus and write a tokenizer directory.

    Frames are sampled while the audio streams through, so memory is bounded by --max-frames, not by the corpus size. Bad files are skipped and listed (unless --strict). With --engine ray, the Ray workers encode (on --device) and this process samples and fits; the sample, so the k-means, is the same with either engine."""
    from ..corpus.fit import fit_kmeans_corpus
    from .common import err

    job_engine = make_engine(engine, ray_address, actors, device)
    utterances = collect_inputs(inputs, id_column)
    enc = load_encoder(encoder, either("--layers", layers, "--layer", layer), device if job_engine is None else "cpu",
                       dtype)
    with JobProgress(err, enc.sample_rate, "features", quiet) as meter:
        tok, report = fit_kmeans_corpus(
            utterances, enc, k, out, percent=percent, max_frames=max_frames, iters=iters, seed=seed,
            batch_seconds=batch_seconds, workers=workers, strict=strict, engine=job_engine,
            on_start=meter.start, on_progress=meter.advance)
    if not quiet:
        for stream, km in tok.quantizers.items():
            say(f"{stream}: K={km.k} fitted on {report.frames_used[stream]} of {report.frames_seen[stream]} "
                f"frames from {report.files} files; inertia {km.info['inertia']:.6g}")
        say(f"wrote {out} (use it with: speechtok tokenize ... -t {out})")
    if report.failed:
        say(f"{len(report.failed)} files failed and were skipped:", style="red")
        for name, reason in report.failed[:10]:
            say(f"  {name}: {reason}")
        raise typer.Exit(EXIT_FILES_FAILED)


@boundary
def extract(
    inputs: List[str] = INPUTS,
    id_column: Optional[str] = ID_COLUMN,
    encoder: str = ENCODER,
    layers: Optional[str] = LAYERS,
    out: str = typer.Option(..., "--out", "-o", help="Output directory (Parquet: also an object store URL, s3://bucket/prefix)."),
    fmt: str = typer.Option("parquet", "--format", help="parquet (shards, resumable) or fairseq ({split}_{rank}_{nshard}.npy + .len per layer)."),
    split: Optional[str] = typer.Option(None, help="fairseq file prefix (default: the .tsv's name, else 'data')."),
    batch_seconds: Optional[float] = BATCH_SECONDS,
    device: str = DEVICE,
    dtype: Optional[str] = DTYPE,
    workers: int = WORKERS,
    strict: bool = STRICT,
    rank: int = RANK,
    nshard: int = NSHARD,
    shard_size: int = SHARD_SIZE,
    engine: str = ENGINE,
    ray_address: Optional[str] = RAY_ADDRESS,
    actors: Optional[int] = ACTORS,
    quiet: bool = QUIET,
):
    """Extract continuous features (SSL layers or MFCC) of a corpus.

    Parquet output is resumable like `tokenize` and can run on Ray (--engine ray; the workers build the encoder on --device, this process writes the shards). The fairseq layout is written by this process, in input order."""
    from ..corpus.extract import extract_corpus, extract_fairseq
    from ..corpus.inputs import split_name
    from .common import err

    if fmt not in ("parquet", "fairseq"):
        raise typer.BadParameter(f"--format must be parquet or fairseq, not {fmt!r}")
    job_engine = make_engine(engine, ray_address, actors, device)
    if job_engine is not None and fmt == "fairseq":
        raise InputError("--format fairseq is written in input order by one process: use --engine local (with "
                         "--rank/--nshard to split it), or --format parquet on Ray")
    utterances = collect_inputs(inputs, id_column)
    enc = load_encoder(encoder, layers, device if job_engine is None else "cpu", dtype)
    if fmt == "parquet":
        run_job("extract", enc.sample_rate, quiet, out, lambda start, advance: extract_corpus(
            utterances, enc, out, batch_seconds=batch_seconds, workers=workers, strict=strict, rank=rank,
            nshard=nshard, shard_size=shard_size, engine=job_engine, on_start=start, on_progress=advance))
        return
    with JobProgress(err, enc.sample_rate, "extract", quiet) as meter:
        written = extract_fairseq(utterances, enc, out, split or split_name(inputs) or "data",
                                  batch_seconds=batch_seconds, workers=workers, rank=rank, nshard=nshard,
                                  on_start=meter.start, on_progress=meter.advance)
    if not quiet:
        say("wrote " + ", ".join(str(p) for p in written.values()) + " (+ .len)")


@boundary
def export(
    corpus: str = CORPUS,
    fmt: str = typer.Option(..., "--format", "-f", help="km (fairseq labels + dict), txt, jsonl or npy (one file per utterance)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Directory to write into."),
    dest: Optional[Path] = typer.Option(None, "--dest", hidden=True, help="Old spelling of --out."),
    split: Optional[str] = typer.Option(None, help="File prefix (default: the tokenized .tsv's name, else 'data')."),
    style: str = typer.Option("fairseq", help="Text style for txt: fairseq, speechgpt, spiritlm."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Write .km even though some utterances failed (lines then skip them)."),
):
    """Write a tokenized corpus in the formats other tools read (rows in input order)."""
    from ..corpus.export import export as run_export

    target = either("--out", out, "--dest", dest)
    if target is None:
        raise typer.BadParameter("--out / -o is required", param_hint="--out")
    written = run_export(corpus, fmt, target, split=split, style=style, allow_missing=allow_missing)
    say(f"wrote {len(written)} files to {target}")


@boundary
def decode(
    corpus: str = CORPUS,
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the audio: <id>.wav per utterance (float WAV at the tokenizer's rate)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", "-t", help="Decode with this tokenizer (default: the one that made the tokens, from the manifest)."),
    batch_seconds: Optional[float] = BATCH_SECONDS,
    device: str = DEVICE,
    engine: str = ENGINE,
    ray_address: Optional[str] = RAY_ADDRESS,
    actors: Optional[int] = ACTORS,
    quiet: bool = QUIET,
):
    """Turn a tokenized corpus back into audio, with the tokenizer's decoder (a codec's, or the unit vocoder `import speechbrain` brings).

    Resumable: files already written are kept, and each file appears only once complete. With --engine ray, actors decode a shard each and write its files (the corpus and OUT must be at the same paths on every node)."""
    from ..corpus.decode import decode_corpus, tokenizer_of
    from ..runtime.device import batch_seconds as default_or
    from .common import err

    quiet_transformers()
    job_engine = make_engine(engine, ray_address, actors, device)
    here = device if job_engine is None else "cpu"  # with Ray, the workers decode
    tok = tokenizer_of(corpus, here) if tokenizer is None else load_tokenizer(tokenizer, None, here, None)
    tok.batch_seconds = default_or(batch_seconds, device)
    with JobProgress(err, tok.decode_sample_rate, "decode", quiet) as meter:
        result = decode_corpus(corpus, out, tok, engine=job_engine, on_start=meter.start, on_progress=meter.advance)
    if not quiet:
        hours = result.samples / tok.decode_sample_rate / 3600
        say(f"decode: wrote {result.written} files ({hours:.3f} h) to {out}"
            + (f"; {result.skipped} already there" if result.skipped else ""))


def register(app: typer.Typer) -> None:
    app.command()(tokenize)
    app.command("fit-kmeans")(fit_kmeans)
    app.command()(extract)
    app.command()(export)
    app.command()(decode)
