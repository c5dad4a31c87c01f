"""`speechtok encode`, `info`, `presets`: one tokenizer, a few files, at the terminal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..audio import AudioError, readable
from ..errors import EXIT_FILES_FAILED
from .common import BANDWIDTH, DEVICE, DTYPE, LAYERS, N_QUANTIZERS, TOKENIZER, boundary, err, load_tokenizer, say


@boundary
def encode(
    inputs: List[Path] = typer.Argument(..., metavar="INPUTS", help="Audio files (anything libsndfile reads: wav, flac, ogg, mp3)."),
    tokenizer: str = TOKENIZER,
    layers: Optional[str] = LAYERS,
    style: str = typer.Option("fairseq", help="Text form: fairseq ('12 7 93'), speechgpt ('<12><7>'), spiritlm ('[Hu12]')."),
    dedup: bool = typer.Option(False, "--dedup", help="Merge repeated units (per stream)."),
    n_quantizers: Optional[int] = N_QUANTIZERS,
    bandwidth: Optional[float] = BANDWIDTH,
    device: str = DEVICE,
    dtype: Optional[str] = DTYPE,
):
    """Print the units of each file: `path<TAB>units`, one tab-separated column per stream (a tab, line break or backslash in a path is written as \\t, \\n, \\\\; bytes that are not UTF-8 as \\xNN).

    A file that cannot be read is reported on stderr with the reason; the others are still encoded, and the exit code is 1."""
    tok = load_tokenizer(tokenizer, layers, device, dtype, n_quantizers, bandwidth)
    waves, good, failed = [], [], 0
    for path in inputs:
        try:
            waves.append(tok.read(path))
            good.append(path)
        except AudioError as error:
            say(str(error), label="skipped")
            failed += 1
    total = sum(len(w) for w in waves)
    with Progress(TextColumn("encoding"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeRemainingColumn(), console=err, transient=True, disable=total < 60 * tok.sample_rate) as bar:
        task = bar.add_task("encode", total=total)
        all_units = tok.encode_waves(waves, progress=lambda n: bar.advance(task, n))
    for path, units in zip(good, all_units):
        columns = [units.select(s).dedup().to_text(style) if dedup else units.to_text(style, s) for s in units.streams]
        sys.stdout.write(_one_field(str(path)) + "\t" + "\t".join(columns) + "\n")
    if failed:
        raise typer.Exit(EXIT_FILES_FAILED)


@boundary
def info(
    tokenizer: str = typer.Argument(..., metavar="TOKENIZER", help="Tokenizer directory, preset name, or codec directory / DAC .pth."),
    layers: Optional[str] = LAYERS,
    n_quantizers: Optional[int] = N_QUANTIZERS,
    bandwidth: Optional[float] = BANDWIDTH,
):
    """Show a tokenizer's encoder, streams, vocabulary sizes, frame rate and bitrate."""
    tok = load_tokenizer(tokenizer, layers, "cpu", None, n_quantizers, bandwidth)
    config = tok.front_end.to_dict()
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
    bits = tok.bitrate
    table.add_row("bitrate", f"{bits:.0f} bit/s ({bits / 1000:.3g} kbps)"
                  + ("" if config["type"] == "codec" else " before deduplication"))
    Console(soft_wrap=True).print(table)


def presets():
    """List the published tokenizers that can be loaded by name."""
    from ..tokenizer.presets import CODEC_PRESETS, PRESETS

    for p in PRESETS.values():  # plain lines: names are never shortened, and grep works
        layers = ",".join(map(str, p.layers))
        typer.echo(f"{p.name:<28} {p.encoder:<28} layers {layers:<18} K={p.k:<5} {p.description}")
    for c in CODEC_PRESETS.values():
        typer.echo(f"{c.name:<28} {c.model:<28} {'codec':<33} {c.description}")


def register(app: typer.Typer) -> None:
    app.command()(encode)
    app.command()(info)
    app.command()(presets)


def _one_field(path: str) -> str:
    """A path as one field of a tab-separated line (escaped as Python writes strings)."""
    text = readable(path.replace("\\", "\\\\"))  # backslashes first: readable's \\xNN escapes stay single
    return text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
