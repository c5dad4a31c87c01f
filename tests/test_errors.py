"""What a user sees when something is wrong: tampered tokenizers refused at load time, and one exit
code per outcome (0 ok, 1 some files failed, 2 refused input, 3 the job could not finish, 4 a bug)."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

import speechtok
from speechtok import KMeans, MFCCEncoder, Tokenizer
from speechtok.cli import app
from speechtok.errors import FormatError


@pytest.fixture(scope="module")
def mfcc_tokenizer(tmp_path_factory, speech_files):
    encoder = MFCCEncoder()
    frames = torch.cat([f["mfcc"] for f in encoder.encode_batch(speech_files[:2])])
    directory = tmp_path_factory.mktemp("tok")
    Tokenizer(encoder, {"mfcc": KMeans.fit(frames, 12, seed=0)}).save_pretrained(directory)
    return directory


def copy_tokenizer(source, target):
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def rewrite_centroids(directory, change):
    """Replace the centroids file by `change(centroids)`, keeping its JSON consistent with it (so
    only tokenizer.json can tell the difference)."""
    path = directory / "kmeans_mfcc.safetensors"
    centroids = change(load_file(str(path))["centroids"])
    save_file({"centroids": np.ascontiguousarray(centroids)}, str(path))
    info = json.loads(path.with_suffix(".json").read_text())
    info.update(k=int(centroids.shape[0]), dim=int(centroids.shape[1]))
    path.with_suffix(".json").write_text(json.dumps(info))


def edit_config(directory, change):
    config = json.loads((directory / "tokenizer.json").read_text())
    change(config)
    (directory / "tokenizer.json").write_text(json.dumps(config))


def test_an_intact_tokenizer_loads(mfcc_tokenizer, speech_files):
    tok = speechtok.load(mfcc_tokenizer)
    assert tok.vocab_sizes == (12,) and len(tok.encode(speech_files[0])) > 0


@pytest.mark.parametrize("tamper, words", [
    # tokenizer.json says K=50, the safetensors hold 12 centroids
    (lambda d: edit_config(d, lambda c: c["streams"][0].update(k=50)), "K=50"),
    # centroids reversed: K and dims still agree, the sha256 does not
    (lambda d: rewrite_centroids(d, lambda c: c[::-1]), "sha256"),
    # NaN centroids
    (lambda d: rewrite_centroids(d, lambda c: np.where(np.arange(len(c))[:, None] == 3, np.nan, c)), "NaN"),
    # centroids of the wrong dimension for the encoder (digest updated, so only the dims disagree)
    (lambda d: (rewrite_centroids(d, lambda c: c[:, :20]), edit_config(d, lambda c: c["streams"][0].update(
        sha256=__import__("hashlib").sha256(load_file(str(d / "kmeans_mfcc.safetensors"))["centroids"].tobytes())
        .hexdigest()))), "20-dim"),
])
def test_a_tampered_tokenizer_is_refused_naming_the_file(mfcc_tokenizer, tmp_path, tamper, words):
    directory = copy_tokenizer(mfcc_tokenizer, tmp_path / "tok")
    tamper(directory)
    with pytest.raises(FormatError) as error:
        speechtok.load(directory)
    assert str(directory) in str(error.value) and words in str(error.value)
    # through the command line: refused input, exit 2, the message and no traceback
    result = CliRunner().invoke(app, ["info", str(directory)])
    assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output


def test_broken_tokenizer_files_name_the_file(mfcc_tokenizer, tmp_path):
    broken_json = copy_tokenizer(mfcc_tokenizer, tmp_path / "json")
    (broken_json / "tokenizer.json").write_text("{not json")
    with pytest.raises(FormatError, match="tokenizer.json: not valid JSON"):
        speechtok.load(broken_json)
    wrong_key = copy_tokenizer(mfcc_tokenizer, tmp_path / "key")
    save_file({"weights": np.zeros((12, 39), np.float32)}, str(wrong_key / "kmeans_mfcc.safetensors"))
    with pytest.raises(FormatError, match=r"kmeans_mfcc.safetensors: no 'centroids' tensor \(it holds weights\)"):
        speechtok.load(wrong_key)


def test_unknown_names_are_not_quoted_like_a_key_error():
    result = CliRunner().invoke(app, ["info", "no-such-tokenizer"])
    assert result.exit_code == 2
    assert "error: 'no-such-tokenizer' is neither" in result.output and "\"'" not in result.output


def tokenize(*args):
    return CliRunner().invoke(app, ["tokenize", *map(str, args), "-q"])


def test_exit_codes_tell_the_outcomes_apart(mfcc_tokenizer, speech_files, tmp_path, monkeypatch):
    good = [str(p) for p in speech_files[:2]]
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")

    # 0: all good; 1: finished, one file failed (and listed)
    assert tokenize(*good, "-t", mfcc_tokenizer, "-o", tmp_path / "ok").exit_code == 0
    failed = tokenize(*good, bad, "-t", mfcc_tokenizer, "-o", tmp_path / "failed")
    assert failed.exit_code == 1 and "bad.wav" in failed.output
    assert (tmp_path / "failed" / "manifest.json").exists()

    # 2: refused input - a JSONL manifest with a non-numeric start, a different job in OUT
    manifest = tmp_path / "segments.jsonl"
    manifest.write_text(json.dumps({"path": good[0], "start": "soon"}) + "\n")
    refused = tokenize(manifest, "-t", mfcc_tokenizer, "-o", tmp_path / "refused")
    assert refused.exit_code == 2 and "segments.jsonl:1" in refused.output and "Traceback" not in refused.output
    other = tokenize(*good, "--dedup", "-t", mfcc_tokenizer, "-o", tmp_path / "ok")
    assert other.exit_code == 2 and "different job" in other.output

    # 3: the job could not finish - the disk fills up while a shard is written
    import pyarrow.parquet as pq

    class FullDisk(pq.ParquetWriter):
        def write_table(self, table, *args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device", self.where)

    monkeypatch.setattr(pq, "ParquetWriter", FullDisk)
    full = tokenize(*good, "-t", mfcc_tokenizer, "-o", tmp_path / "full")
    assert full.exit_code == 3, full.output
    assert "No space left on device" in full.output and str(tmp_path / "full") in full.output
    assert "Traceback" not in full.output
    monkeypatch.undo()
    assert not list((tmp_path / "full" / "data").glob("*.parquet"))  # nothing half-written kept

    # 4: a bug shows its traceback
    monkeypatch.setattr("speechtok.corpus.tokenize.UnitsStage.__call__", lambda self, waves: 1 / 0)
    bug = tokenize(*good, "-t", mfcc_tokenizer, "-o", tmp_path / "bug")
    assert bug.exit_code == 4 and "ZeroDivisionError" in bug.output and "Traceback" in bug.output


def test_a_damaged_shard_is_a_job_failure_naming_it(mfcc_tokenizer, speech_files, tmp_path):
    out = tmp_path / "units"
    assert tokenize(*speech_files[:2], "-t", mfcc_tokenizer, "-o", out).exit_code == 0
    shard = next((out / "data").glob("*.parquet"))
    data = bytearray(shard.read_bytes())
    data[4:1004] = bytes(1000)  # zeroed, footer intact
    shard.write_bytes(bytes(data))
    result = CliRunner().invoke(app, ["export", str(out), "--format", "km", "-o", str(tmp_path / "km")])
    assert result.exit_code == 3 and shard.name in result.output and "Traceback" not in result.output


def test_help_shows_flags_as_flags():
    result = CliRunner().invoke(app, ["tokenize", "--help"])
    assert result.exit_code == 0 and "--dedup" in result.output and "<bool>" not in result.output


def test_long_paths_are_not_wrapped_when_stderr_is_a_pipe(tmp_path):
    import subprocess
    import sys

    deep = tmp_path / ("a-rather-long-directory-name-" * 4) / "and-a-file-that-does-not-exist.wav"
    result = subprocess.run([sys.executable, "-m", "speechtok.cli", "tokenize", str(deep), "-t", "mfcc", "-o",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert any(str(deep) in line for line in result.stderr.splitlines())  # on one line, whole


def test_usage_errors_inside_commands_are_bad_arguments_not_bugs(mfcc_tokenizer, speech_files, tmp_path):
    bad_format = CliRunner().invoke(app, ["extract", str(speech_files[0]), "-e", "mfcc", "-o", str(tmp_path / "x"),
                                          "--format", "foo"])
    assert bad_format.exit_code == 2 and "parquet or fairseq" in bad_format.output
    out = tmp_path / "units"
    assert tokenize(speech_files[0], "-t", mfcc_tokenizer, "-o", out).exit_code == 0
    missing = CliRunner().invoke(app, ["eval", "purity", str(out), "--alignments", str(tmp_path / "nowhere.tsv")])
    assert missing.exit_code == 2 and "nowhere.tsv" in missing.output and "Traceback" not in missing.output


def test_a_device_this_torch_cannot_use_is_refused(mfcc_tokenizer, speech_files, tmp_path):
    result = tokenize(speech_files[0], "-t", mfcc_tokenizer, "-o", tmp_path / "out", "--device", "gpu")
    assert result.exit_code == 2 and "unknown device 'gpu'" in result.output and "Traceback" not in result.output
    if not torch.cuda.is_available():
        cuda = tokenize(speech_files[0], "-t", mfcc_tokenizer, "-o", tmp_path / "out", "--device", "cuda")
        assert cuda.exit_code == 2 and "sees no CUDA GPU" in cuda.output


def test_resume_reports_kept_shards_and_redoes_a_shard_whose_record_is_damaged(mfcc_tokenizer, speech_files,
                                                                                tmp_path):
    out = tmp_path / "units"
    args = [*speech_files[:4], "-t", mfcc_tokenizer, "-o", out, "--shard-size", "2"]
    assert CliRunner().invoke(app, ["tokenize", *map(str, args)]).exit_code == 0
    again = CliRunner().invoke(app, ["tokenize", *map(str, args)])
    assert again.exit_code == 0 and "2 finished shards kept from an earlier run" in again.output
    record = sorted((out / ".state").glob("*.parquet.json"))[0]
    record.write_text("{not json")
    redo = CliRunner().invoke(app, ["tokenize", *map(str, args)])
    assert redo.exit_code == 0 and "is damaged" in redo.output and "1 finished shards kept" in redo.output
    (out / "job.json").write_text("{not json")
    broken = CliRunner().invoke(app, ["tokenize", *map(str, args)])
    assert broken.exit_code == 3 and "job.json" in broken.output and "Traceback" not in broken.output


def test_long_files_are_encoded_as_they_are_read_with_the_same_tokens(mfcc_tokenizer, speech_waves, tmp_path,
                                                                        monkeypatch):
    # files longer than the streaming threshold (made small here) are read block by block as they are
    # encoded; their rows equal those of reading them whole, and a file that turns out bad half-way
    # is recorded as failed, not a crashed job
    import pyarrow.parquet as pq
    import soundfile as sf

    import speechtok.corpus.reader as reader
    import speechtok.corpus.tokenize as tokenize

    joined = np.concatenate(speech_waves)
    audio = tmp_path / "audio"
    audio.mkdir()
    long = np.tile(joined, 60)[: 16000 * 300]  # 218 s at 22.05 kHz: two blocks of MFCC frames
    sf.write(audio / "long.flac", np.stack([long, long * 0.5], 1), 22050)  # resampled as it is read
    sf.write(audio / "short.wav", joined[:16000], 16000)
    bad = np.tile(joined, 3)[: 16000 * 12].astype(np.float32)
    bad[16000 * 9] = np.nan  # met only after the first blocks have been encoded
    sf.write(audio / "nan.wav", bad, 16000, subtype="FLOAT")

    streamed = []
    encode_stream = speechtok.Tokenizer.encode_stream
    monkeypatch.setattr(speechtok.Tokenizer, "encode_stream",
                        lambda self, pieces: streamed.append(1) or encode_stream(self, pieces))
    monkeypatch.setattr(reader, "STREAM_MIN_BYTES", 0)
    rows = {}
    for name, threshold in [("whole", 1e9), ("streamed", 5.0)]:
        monkeypatch.setattr(tokenize, "STREAM_SECONDS", threshold)
        result = CliRunner().invoke(app, ["tokenize", str(audio), "-t", str(mfcc_tokenizer), "-o",
                                          str(tmp_path / name), "-q"])
        assert result.exit_code == 1, result.output  # nan.wav failed
        rows[name] = {r["id"]: r for r in pq.read_table(tmp_path / name / "data").to_pylist()}
        errors = [json.loads(line) for line in (tmp_path / name / "errors.jsonl").read_text().splitlines()]
        assert [(e["id"], e["reason"]) for e in errors] == [("nan", "contains NaN or Inf samples")]
    assert len(streamed) == 2  # long.flac and nan.wav; short.wav was read whole
    assert rows["streamed"] == rows["whole"] and sorted(rows["whole"]) == ["long", "short"]
    assert rows["streamed"]["long"]["num_samples"] == len(speechtok.load_audio(audio / "long.flac", 16000))
