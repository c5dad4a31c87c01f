"""`speechtok convert` and `speechtok import kmeans | speechbrain`: other tools' files made into
speechtok's (a transformers directory, a tokenizer directory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .common import LAYER_ALIAS, LAYERS, boundary, either, parse_layers, quiet_transformers, say


@boundary
def convert(
    checkpoint: Path = typer.Argument(..., metavar="CHECKPOINT", help="fairseq wav2vec2 / HuBERT (.pt, pre-trained or fine-tuned), Microsoft WavLM (.pt) or s3prl converted checkpoint."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write: config.json, model.safetensors, preprocessor_config.json."),
):
    """Convert an original SSL checkpoint into a transformers model directory.

    Not needed to use one: every --encoder option (and SSLEncoder.from_pretrained) takes the checkpoint file itself and converts it on the fly. The checkpoint is read without running code from it (an allow-list of the types such files hold); weights and config fields that do not map are an error naming them."""
    from ..formats.ssl_checkpoints import convert as run_convert

    quiet_transformers()
    run_convert(checkpoint, out)
    fields = json.loads((out / "config.json").read_text())
    say(f"wrote {out}: {fields['model_type']}, {fields['num_hidden_layers']} layers x {fields['hidden_size']}, "
        f"feature extractor {fields['feat_extract_norm']} norm, "
        f"{'stable' if fields['do_stable_layer_norm'] else 'post'} layer norm")


import_app = typer.Typer(help="Make a speechtok tokenizer from k-means other tools wrote.", no_args_is_help=True)


@import_app.command("kmeans")
@boundary
def import_kmeans(
    file: Path = typer.Argument(..., metavar="FILE", help="scikit-learn k-means (joblib/pickle, e.g. fairseq's km.bin) or centroid .npy [K, D]."),
    encoder: str = typer.Option(..., "--encoder", "-e", help="The SSL model it was fitted on (hub id, directory or original checkpoint file), or 'mfcc'."),
    layers: Optional[str] = typer.Option(None, "--layers", "-l", help="The layer it was fitted on."),
    layer: Optional[str] = LAYER_ALIAS,
    out: Path = typer.Option(..., "--out", "-o", help="Tokenizer directory to write."),
    vocoder: Optional[Path] = typer.Option(None, help="A fairseq / textlesslib CodeHiFiGAN checkpoint for these units (adds `decode`)."),
    vocoder_config: Optional[Path] = typer.Option(None, help="Its JSON config (default: config.json beside it)."),
):
    """One k-means file + its encoder and layer -> a tokenizer directory."""
    from ..errors import InputError
    from ..tokenizer.imports import import_kmeans as run_import

    chosen = parse_layers(either("--layers", layers, "--layer", layer))
    if chosen is not None and len(chosen) != 1:
        raise InputError(f"one k-means file is for one layer; got --layers {','.join(map(str, chosen))}")
    quiet_transformers()
    tok = run_import(file, encoder, chosen[0] if chosen else None, out, vocoder=vocoder, vocoder_config=vocoder_config)
    say(f"wrote {out}: {tok}")


@import_app.command("speechbrain")
@boundary
def import_speechbrain(
    source: str = typer.Argument(..., metavar="SOURCE", help="SpeechBrain repo: local directory or hub id (e.g. speechbrain/hifigan-wavlm-k1000-LibriTTS)."),
    encoder: str = typer.Option(..., "--encoder", "-e", help="The SSL model its k-means were fitted on, e.g. microsoft/wavlm-large."),
    out: Path = typer.Option(..., "--out", "-o", help="Tokenizer directory to write."),
    layers: Optional[str] = LAYERS,
):
    """A SpeechBrain DiscreteSSL k-means repo (kmeans/*_L<n>.pt) -> a tokenizer directory."""
    from ..tokenizer.imports import import_speechbrain as run_import

    quiet_transformers()
    tok = run_import(source, encoder, out, parse_layers(layers))
    say(f"wrote {out}: {tok}")


def register(app: typer.Typer) -> None:
    app.command()(convert)
    app.add_typer(import_app, name="import")
