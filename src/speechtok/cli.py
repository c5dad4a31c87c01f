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


def _load(tokenizer: str, layers: Optional[str], device: str, dtype: Optional[str]):
    import speechtok

    options = {"device": device}
    if dtype:
        options["dtype"] = dtype
    try:
        return speechtok.load(tokenizer, layers=_layers(layers), **options)
    except (KeyError, ValueError, FileNotFoundError, OSError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None


@app.command()
def encode(
    files: List[Path] = typer.Argument(..., help="Audio files (anything libsndfile reads: wav, flac, ogg, mp3)."),
    tokenizer: str = typer.Option(..., "--tokenizer", "-t", help="Tokenizer directory or preset name (see `speechtok presets`)."),
    layers: Optional[str] = typer.Option(None, help="Layers of a multi-layer preset, e.g. 7,23 (default: all)."),
    style: str = typer.Option("fairseq", help="Text form: fairseq ('12 7 93'), speechgpt ('<12><7>'), spiritlm ('[Hu12]')."),
    dedup: bool = typer.Option(False, "--dedup", help="Merge repeated units (per stream)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, ..."),
    dtype: Optional[str] = typer.Option(None, help="float32 (default), bfloat16 or float16."),
):
    """Print the units of each file: `path<TAB>units`, one tab-separated column per stream.

    A file that cannot be read is reported on stderr with the reason; the others are still
    encoded, and the exit code is 1.
    """
    from .audio import AudioError

    tok = _load(tokenizer, layers, device, dtype)
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


@app.command()
def info(
    tokenizer: str = typer.Argument(..., help="Tokenizer directory or preset name."),
    layers: Optional[str] = typer.Option(None, help="Layers of a multi-layer preset, e.g. 7,23."),
):
    """Show a tokenizer's encoder, streams, vocabulary sizes, frame rate and bitrate."""
    tok = _load(tokenizer, layers, "cpu", None)
    config = tok.encoder.config()
    table = Table(title=f"{tokenizer}", show_header=False)
    table.add_row("encoder", str(config.get("model") or config["type"]))
    if config["type"] == "ssl":
        table.add_row("waveform normalisation", str(config["normalize"]))
        table.add_row("chunk", f"{config['chunk_seconds']} s")
    table.add_row("sample rate", f"{tok.sample_rate} Hz")
    table.add_row("frame rate", f"{tok.frame_rate:g} Hz")
    table.add_row("streams", ", ".join(f"{s} (K={k})" for s, k in zip(tok.streams, tok.vocab_sizes)))
    bits = tok.frame_rate * sum(math.log2(k) for k in tok.vocab_sizes)
    table.add_row("bitrate", f"{bits:.0f} bit/s before deduplication")
    Console().print(table)


@app.command()
def presets():
    """List the published tokenizers that can be loaded by name."""
    from .presets import PRESETS

    for p in PRESETS.values():  # plain lines: names are never shortened, and grep works
        layers = ",".join(map(str, p.layers))
        typer.echo(f"{p.name:<28} {p.encoder:<28} layers {layers:<18} K={p.k:<5} {p.description}")


if __name__ == "__main__":  # pragma: no cover
    app()
