"""What every command shares: the consoles, the one error boundary, option declarations, and
small helpers that turn option strings into library arguments."""

from __future__ import annotations

import functools
import traceback
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console
from rich.text import Text

from ..errors import EXIT_BUG, EXIT_JOB_FAILED, InputError, SpeechtokError

# soft_wrap: paths and messages are never broken at 80 columns when stderr is not a terminal
err = Console(stderr=True, soft_wrap=True, highlight=False)


def say(message: str, style: str | None = None, label: str | None = None) -> None:
    """One line on stderr; `message` is shown as is (paths may hold [brackets])."""
    text = Text()
    if label:
        text.append(label + " ", style="red")
    text.append(message, style=style)
    err.print(text)


def _pass_through() -> tuple[type[BaseException], ...]:
    """Exceptions typer handles itself: its usage errors and exits (typer >= 0.29 has its own copy
    of click, older ones use click's)."""
    kinds: list[type[BaseException]] = [typer.Exit, typer.Abort, typer.BadParameter, KeyboardInterrupt]
    if hasattr(typer, "TyperException"):
        kinds.append(typer.TyperException)
    try:
        import click

        kinds.append(click.exceptions.ClickException)
    except ImportError:
        pass
    return tuple(kinds)


_PASS_THROUGH = _pass_through()


def boundary(command: Callable) -> Callable:
    """The one place errors become exit codes (see `speechtok.errors`): a SpeechtokError prints its
    message and exits with its code (1 files failed, 2 bad arguments / input, 3 job failed); an
    OSError (disk full, permission, I/O) exits 3 naming the path; anything else is a bug: its
    traceback is shown and the exit code is 4."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except _PASS_THROUGH:
            raise  # usage errors (typer prints them, exit 2) and exits the command chose
        except SpeechtokError as error:
            say(str(error), label="error:")
            raise typer.Exit(error.exit_code) from None
        except OSError as error:
            where = f" ({error.filename})" if getattr(error, "filename", None) else ""
            say(f"the job could not finish{where}: {error.strerror or error}", label="error:")
            raise typer.Exit(EXIT_JOB_FAILED) from None
        except Exception:  # noqa: BLE001 - the boundary: anything else is a bug
            err.print(traceback.format_exc(), markup=False)
            say("this is a bug in speechtok; please report it with the traceback above", label="error:")
            raise typer.Exit(EXIT_BUG) from None

    return run


def list_failures(errors: list[dict]) -> None:
    """The first failed inputs (id, path, reason), and how many more there are."""
    for e in errors[:10]:
        say(f"  {e['id']} ({e['path']}): {e['reason']}")
    if len(errors) > 10:
        say(f"  ... and {len(errors) - 10} more")


def parse_layers(value: Optional[str]) -> Optional[List[int]]:
    """'7,23' -> [7, 23]; None or '' -> None."""
    if not value:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--layers: expected comma-separated layer numbers like 7,23, got {value!r}") from None


def either(name: str, value, alias_name: str, alias):
    """An option given by its name or by its old spelling (kept, hidden, for one release)."""
    if value is not None and alias is not None and value != alias:
        raise InputError(f"{name} and {alias_name} (its old spelling) disagree; give {name} only")
    return value if value is not None else alias


def quiet_transformers() -> None:
    """transformers' own "Loading weights" bar would interleave with ours (applied when a model
    loads: importing transformers here would cost MFCC-only jobs half a second)."""
    from .. import hub

    hub.LOADING_BARS = False


def load_tokenizer(tokenizer: str, layers: Optional[str], device: str, dtype: Optional[str],
                   n_quantizers: Optional[int] = None, bandwidth: Optional[float] = None):
    from ..tokenizer import load

    quiet_transformers()
    options = {"device": device, "dtype": dtype, "n_quantizers": n_quantizers, "bandwidth": bandwidth}
    return load(tokenizer, layers=parse_layers(layers), **{k: v for k, v in options.items() if v is not None})


def load_encoder(encoder: str, layers: Optional[str], device: str, dtype: Optional[str]):
    from ..encoders import build_encoder

    quiet_transformers()
    options = {"device": device, **({"dtype": dtype} if dtype else {})}
    return build_encoder(encoder, parse_layers(layers) or [], **options)


def make_engine(engine: str, ray_address: Optional[str], actors: Optional[int], device: str):
    """The corpus engine the options name (None: the local engine, this process)."""
    if engine == "local":
        if ray_address is not None or actors is not None:
            raise InputError("--ray-address and --actors apply to --engine ray")
        return None
    if engine != "ray":
        raise InputError(f"--engine must be local or ray, not {engine!r}")
    from ..corpus.ray_engine import RayEngine

    return RayEngine(ray_address, actors, device)


def collect_inputs(inputs: List[str], id_column: Optional[str] = None):
    from ..corpus import collect

    utterances = collect(inputs, id_column)
    if not utterances:
        raise InputError("the inputs name no audio files")
    return utterances


# Options shared by several commands: one declaration each.
INPUTS = typer.Argument(..., metavar="INPUTS", help="Audio files, directories, globs, .txt lists, fairseq .tsv or JSONL manifests, Hugging Face datasets (Parquet files, save_to_disk directories), WebDataset .tar shards (brace patterns: train-{000..099}.tar).")
ID_COLUMN = typer.Option(None, "--id-column", help="Parquet / Arrow inputs: the column holding the utterance ids (default: `id`, else the audio's path without extension, else <file>/<row>).")
CORPUS = typer.Argument(..., metavar="CORPUS", help="A directory written by `speechtok tokenize` (or its object store URL, s3://...).")
TOKENIZER = typer.Option(..., "--tokenizer", "-t", help="Tokenizer directory (from fit-kmeans / import), preset name (`speechtok presets`: k-means or codec), or a codec directory / DAC .pth.")
ENCODER = typer.Option(..., "--encoder", "-e", help="SSL model (hub id, local directory, or original fairseq / WavLM / s3prl checkpoint file), or 'mfcc'.")
LAYERS = typer.Option(None, "--layers", "-l", help="Layers, comma-separated, e.g. 7 or 7,23 (0 = input of the first transformer block).")
LAYER_ALIAS = typer.Option(None, "--layer", hidden=True, help="Old spelling of --layers.")
N_QUANTIZERS = typer.Option(None, "--n-quantizers", help="Codecs: codebooks to keep (default: all for DAC, 8 for EnCodec and Mimi).")
BANDWIDTH = typer.Option(None, help="Codecs: choose the codebook count by bitrate in kbps instead, e.g. 6.")
BATCH_SECONDS = typer.Option(None, help="Seconds of padded audio per batch (default: 200 on GPU; 0 = one file at a time, on CPU).")
DEVICE = typer.Option("cpu", help="cpu, cuda, cuda:1, ...")
DTYPE = typer.Option(None, help="float32 (default), bfloat16 or float16.")
WORKERS = typer.Option(4, help="Threads reading and resampling audio ahead of the encoder.")
RANK = typer.Option(0, help="This process's part of the corpus, 0..nshard-1 (fairseq's rank).")
NSHARD = typer.Option(1, help="Number of independent processes the corpus is split across.")
SHARD_SIZE = typer.Option(1000, help="Utterances per output file (the unit of resumption).")
ENGINE = typer.Option("local", help="Where the job runs: local (this process) or ray (a Ray cluster: pip install \"speechtok[ray]\"). Both write the same output; a job can be resumed with either.")
RAY_ADDRESS = typer.Option(None, "--ray-address", help="--engine ray: the cluster to join (default: $RAY_ADDRESS, else a Ray instance started on this machine for the job).")
ACTORS = typer.Option(None, "--actors", help="--engine ray: model replicas encoding in parallel (default: one per GPU with --device cuda, else one).")
STRICT = typer.Option(False, "--strict", help="Stop at the first bad file instead of recording it and going on.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar or summary (errors are still printed).")


def out_option(help: str) -> Path:
    return typer.Option(..., "--out", "-o", help=help)
