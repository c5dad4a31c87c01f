"""The `speechtok` command line, run as a user would."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from speechtok import KMeans, MFCCEncoder, Tokenizer
from speechtok.units import parse_text


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, speech_files):
    encoder = MFCCEncoder()
    frames = torch.cat([f["mfcc"] for f in encoder.encode_batch(speech_files)])
    directory = tmp_path_factory.mktemp("tok")
    Tokenizer(encoder, {"mfcc": KMeans.fit(frames, 16, seed=0)}).save_pretrained(directory)
    return directory


def speechtok_cli(*args):
    return subprocess.run([sys.executable, "-m", "speechtok.cli", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_encode_prints_units_and_reports_bad_files(tokenizer_dir, speech_files, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    result = speechtok_cli("encode", speech_files[0], bad, speech_files[1], "-t", tokenizer_dir, "--dedup")
    assert result.returncode == 1
    assert "bad.wav" in result.stderr and "unreadable or corrupt" in result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(speech_files[0]), str(speech_files[1])]
    expected = Tokenizer.from_pretrained(tokenizer_dir).encode(speech_files[0]).dedup()
    assert parse_text(lines[0].split("\t")[1]).tolist() == expected.stream("mfcc").tolist()


def test_encode_reports_absurd_amplitude(tokenizer_dir, speech_files, tmp_path):
    """A float WAV scaled by 1e30 would give one code for every frame; it is reported instead."""
    import soundfile as sf

    wave, rate = sf.read(speech_files[0], dtype="float32")
    huge = tmp_path / "huge.wav"
    sf.write(huge, wave * 1e30, rate, subtype="FLOAT")
    result = speechtok_cli("encode", huge, speech_files[1], "-t", tokenizer_dir)
    assert result.returncode == 1
    assert "huge.wav" in result.stderr and "far outside [-1, 1]" in result.stderr
    assert [line.split("\t")[0] for line in result.stdout.strip().splitlines()] == [str(speech_files[1])]


def test_encode_styles(tokenizer_dir, speech_files):
    result = speechtok_cli("encode", speech_files[2], "-t", tokenizer_dir, "--style", "spiritlm")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\t")[1].startswith("[Hu")


def test_info_and_presets(tokenizer_dir):
    info = speechtok_cli("info", tokenizer_dir)
    assert info.returncode == 0, info.stderr
    assert "100 Hz" in info.stdout and "K=16" in info.stdout and "400 bit/s" in info.stdout
    presets = speechtok_cli("presets")
    assert "hubert-base-ls960-L9-km500" in presets.stdout and "speechbrain-wavlm-k1000" in presets.stdout


def test_unknown_tokenizer_is_a_clear_error():
    result = speechtok_cli("info", "nonexistent-thing")
    assert result.returncode == 2
    assert "neither a tokenizer directory nor a preset" in result.stderr
