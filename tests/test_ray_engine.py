"""`tokenize --engine ray` leaves exactly what `--engine local` leaves, also when a Ray worker or the
driver is killed mid-job. Ray runs on this machine (2 CPUs), started once for the module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from speechtok import KMeans, MFCCEncoder, Tokenizer
from speechtok.cli import app
from speechtok.corpus.ray_engine import pool_sizes
from speechtok.errors import InputError

from .test_corpus import write_broken, write_corpus

KILL_ENV = "SPEECHTOK_TEST_KILL_FILE"


def kill_worker_hook():
    """Ray worker setup (every worker of the test's Ray job): the third stage call made by a
    process after the file named by $SPEECHTOK_TEST_KILL_FILE appears kills that process, once."""
    from speechtok.corpus import tokenize

    encode, calls = tokenize.UnitsStage.__call__, []

    def dying(self, waves):
        calls.append(1)
        armed = os.environ[KILL_ENV]
        if len(calls) >= 3 and os.path.exists(armed):
            try:
                os.rename(armed, armed + ".fired")  # one process wins, once
            except FileNotFoundError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return encode(self, waves)

    tokenize.UnitsStage.__call__ = dying


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """Ray on 2 CPUs for this module; yields (its address, the kill file)."""
    ray = pytest.importorskip("ray", reason="the Ray engine's tests need ray: pip install 'speechtok[ray]'")
    kill_file = tmp_path_factory.mktemp("kill") / "armed"
    # Workers cannot import this module (tests/ is not on their path), and a setup hook that fails
    # to load makes Ray start workers forever: send the hook's code itself.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": kill_worker_hook, "env_vars": {KILL_ENV: str(kill_file)}})
    yield ray.get_runtime_context().gcs_address, kill_file
    ray.shutdown()


@pytest.fixture(scope="module")
def job(tmp_path_factory, speech_waves):
    """A listing of 195 short files and 5 broken ones (200, as the issue asks), an MFCC + K-means tokenizer, and the
    tokenize arguments (shards of 8 files, deduplicated units with their durations)."""
    root = tmp_path_factory.mktemp("ray_corpus")
    good = write_corpus(root / "audio", speech_waves, 195)
    write_broken(root / "broken")
    broken = sorted((root / "broken").glob("*"))
    listing = root / "files.txt"
    listing.write_text("".join(f"{p}\n" for p in [*good[:40], *broken, *good[40:]]))
    encoder = MFCCEncoder()
    frames = torch.cat([f["mfcc"] for f in encoder.encode_batch(good[:10])])
    Tokenizer(encoder, {"mfcc": KMeans.fit(frames, 32, seed=0)}).save_pretrained(root / "tok")
    return ["tokenize", str(listing), "-t", str(root / "tok"), "--shard-size", "8", "--batch-seconds", "5", "--dedup", "-q"]


def tokenize(*args):
    return CliRunner().invoke(app, list(map(str, args)))


@pytest.fixture(scope="module")
def local_out(tmp_path_factory, job):
    out = tmp_path_factory.mktemp("local") / "out"
    result = tokenize(*job, "-o", out)
    assert result.exit_code == 1, result.output  # 1: some files failed
    return out


def assert_same_output(out: Path, expected: Path):
    """Same shard files (byte for byte), rows, error lists, records and manifest (but the command)."""
    names = sorted(p.name for p in (expected / "data").iterdir())
    assert sorted(p.name for p in (out / "data").iterdir()) == names
    rows = pq.read_table(out / "data").sort_by("id").to_pylist()
    assert rows == pq.read_table(expected / "data").sort_by("id").to_pylist()
    assert len({r["id"] for r in rows}) == len(rows) == 195
    for name in names:
        assert (out / "data" / name).read_bytes() == (expected / "data" / name).read_bytes(), name
    assert (out / "errors.jsonl").read_text() == (expected / "errors.jsonl").read_text()
    assert len((out / "errors.jsonl").read_text().splitlines()) == 5
    for state in (expected / ".state").iterdir():
        assert (out / ".state" / state.name).read_text() == state.read_text(), state.name
    manifest, wanted = (json.loads((d / "manifest.json").read_text()) for d in (out, expected))
    assert {k: v for k, v in manifest.items() if k != "command"} == {k: v for k, v in wanted.items() if k != "command"}
    assert not list(out.rglob("*.tmp"))


def test_ray_engine_writes_what_the_local_engine_writes(ray_cluster, job, local_out, tmp_path):
    out = tmp_path / "out"
    result = tokenize(*job, "-o", out, "--engine", "ray")
    assert result.exit_code == 1, result.output
    assert_same_output(out, local_out)
    # a finished job run again with the other engine: nothing to do, nothing changes
    again = tokenize(*job, "-o", out)
    assert again.exit_code == 1, again.output
    assert_same_output(out, local_out)


def test_a_killed_ray_worker_is_replaced_and_its_work_redone(ray_cluster, job, local_out, tmp_path):
    _, kill_file = ray_cluster
    kill_file.write_text("")
    out = tmp_path / "out"
    result = tokenize(*job, "-o", out, "--engine", "ray", "--actors", "1")
    assert not kill_file.exists() and Path(f"{kill_file}.fired").exists(), "no worker was killed"
    assert result.exit_code == 1, result.output
    assert_same_output(out, local_out)


def test_a_killed_driver_resumes_to_the_same_output(ray_cluster, job, local_out, tmp_path):
    address, _ = ray_cluster
    out = tmp_path / "out"
    command = [sys.executable, "-m", "speechtok.cli", *job, "-o", str(out), "--engine", "ray"]
    driver = subprocess.Popen(command, env={**os.environ, "RAY_ADDRESS": address},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while driver.poll() is None and not list((out / "data").glob("*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert driver.poll() is None, "the job finished before it could be killed; make it longer"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    committed = len(list((out / "data").glob("*.parquet")))
    assert 1 <= committed < 12 and not (out / "manifest.json").exists()
    result = tokenize(*job, "-o", out, "--engine", "ray")
    assert result.exit_code == 1, result.output
    assert_same_output(out, local_out)


def test_without_ray_the_ray_engine_says_how_to_install_it(monkeypatch, job, tmp_path):
    from speechtok.corpus import ray_engine

    monkeypatch.setattr(ray_engine, "ray_available", lambda: False)
    result = tokenize(*job, "-o", tmp_path / "out", "--engine", "ray")
    assert result.exit_code == 2
    assert 'pip install "speechtok[ray]"' in result.output
    assert not (tmp_path / "out").exists()


def test_a_tokenizer_that_cannot_be_loaded_again_is_refused_before_any_work(ray_cluster, job, tmp_path):
    from speechtok.corpus import collect
    from speechtok.corpus.ray_engine import RayEngine
    from speechtok.corpus.tokenize import tokenize_corpus

    built = Tokenizer.from_pretrained(job[3])  # not through speechtok.load: no LoadArgs
    with pytest.raises(InputError, match="save_pretrained"):
        tokenize_corpus(collect([job[1]]), built, tmp_path / "out", engine=RayEngine(device="cpu"))
    assert not list((tmp_path / "out" / "data").iterdir())


def test_actor_pools_fit_the_cluster():
    # this machine's test cluster: one encoder (0.5 CPU, both cores' torch threads), one reader
    assert pool_sizes({"CPU": 2.0}, shards=12) == (1, 1, 2)
    assert pool_sizes({"CPU": 2.0}, shards=12, actors=2) == (2, 1, 1)
    # a GPU node: an encoder per GPU; readers of 4 threads share the CPUs left, one per shard at most
    assert pool_sizes({"CPU": 16.0, "GPU": 2.0}, shards=100, gpu=True) == (2, 3, None)
    assert pool_sizes({"CPU": 16.0, "GPU": 2.0}, shards=2, gpu=True) == (2, 2, None)
    # pools that would wait forever for an actor are refused
    for resources, actors, gpu in [({"CPU": 2.0}, 3, False), ({"CPU": 16.0, "GPU": 1.0}, 2, True), ({"CPU": 16.0}, None, True)]:
        with pytest.raises(InputError):
            pool_sizes(resources, 10, actors, gpu)


# --- the other corpus commands on Ray: the same output as the local engine ------------------------

@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory, speech_waves):
    """24 short files and the 5 broken kinds, listed interleaved."""
    root = tmp_path_factory.mktemp("ray_small")
    good = write_corpus(root / "audio", speech_waves, 24, seed=3)
    write_broken(root / "broken")
    listing = root / "files.txt"
    listing.write_text("".join(f"{p}\n" for p in [*good[:10], *sorted((root / "broken").glob("*")), *good[10:]]))
    return listing, good


def run(*args):
    return CliRunner().invoke(app, list(map(str, args)))


def test_extract_on_ray_writes_what_local_writes(ray_cluster, small_corpus, model_dir, tmp_path):
    listing, _ = small_corpus
    model = model_dir("wavlm-layer-stable")  # normalises its input: the read actors must too
    outs = {}
    for engine in ("local", "ray"):
        outs[engine] = tmp_path / engine
        result = run("extract", listing, "-e", model, "--layers", "1,2", "-o", outs[engine], "--shard-size", "6",
                     "--batch-seconds", "4", "--engine", engine, "-q")
        assert result.exit_code == 1, result.output  # the broken files
    names = sorted(p.name for p in (outs["local"] / "data").iterdir())
    assert len(names) == 5
    assert sorted(p.name for p in (outs["ray"] / "data").iterdir()) == names
    for name in names:
        assert (outs["ray"] / "data" / name).read_bytes() == (outs["local"] / "data" / name).read_bytes(), name
    assert (outs["ray"] / "errors.jsonl").read_text() == (outs["local"] / "errors.jsonl").read_text()
    assert pq.read_table(outs["ray"] / "data").num_rows == 24
    # features, not just equal files: a row is what the encoder gives that file alone
    from speechtok import SSLEncoder

    row = pq.read_table(outs["ray"] / "data").to_pylist()[0]
    alone = SSLEncoder.from_pretrained(str(model), [1, 2]).encode(row["path"])
    torch.testing.assert_close(torch.tensor(row["L2"]), alone["L2"], rtol=1e-5, atol=1e-5)
    refused = run("extract", listing, "-e", model, "--layers", "1", "-o", tmp_path / "fs", "--format", "fairseq",
                  "--engine", "ray")
    assert refused.exit_code == 2 and "--engine local" in refused.output


def test_fit_kmeans_on_ray_fits_what_local_fits(ray_cluster, small_corpus, monkeypatch, tmp_path):
    from speechtok.corpus import sinks

    listing, _ = small_corpus
    monkeypatch.setattr(sinks, "FRAME_WORK_SIZE", 4)  # 8 works, finished on Ray in any order
    models = {}
    for engine in ("local", "ray"):
        result = run("fit-kmeans", listing, "-e", "mfcc", "-k", "12", "--max-frames", "900", "-o", tmp_path / engine,
                     "--engine", engine)
        assert result.exit_code == 1, result.output  # the broken files are listed
        assert "900 of" in result.output
        models[engine] = Tokenizer.from_pretrained(tmp_path / engine).quantizers["mfcc"]
    torch.testing.assert_close(torch.as_tensor(models["ray"].centroids), torch.as_tensor(models["local"].centroids),
                               rtol=0, atol=0)


def test_hubert_labels_on_ray_label_as_local_does(ray_cluster, small_corpus, tmp_path):
    listing, good = small_corpus
    valid = tmp_path / "valid.txt"
    valid.write_text("".join(f"{p}\n" for p in good[:6]))
    train = tmp_path / "train.txt"
    train.write_text("".join(f"{p}\n" for p in good[6:]))
    for engine in ("local", "ray"):
        result = run("hubert-labels", "--train", train, "--valid", valid, "-e", "mfcc", "-k", "10",
                     "--max-frames", "2000", "-o", tmp_path / engine, "--engine", engine, "-q")
        assert result.exit_code in (0, 1), result.output  # 1: label lengths differ from short audio
    for name in ("train.km", "valid.km", "dict.km.txt"):
        assert (tmp_path / "ray" / name).read_text() == (tmp_path / "local" / name).read_text(), name
    assert len((tmp_path / "ray" / "train.km").read_text().splitlines()) == 18


def test_decode_on_ray_writes_what_local_writes(ray_cluster, small_corpus, tmp_path):
    from .test_codecs import _tiny

    listing, _ = small_corpus
    _tiny("dac").eval().save_pretrained(tmp_path / "dac")
    units = tmp_path / "units"
    result = run("tokenize", listing, "-t", tmp_path / "dac", "--n-quantizers", "2", "-o", units, "--shard-size", "7",
                 "-q")
    assert result.exit_code == 1, result.output
    wavs = {}
    for engine in ("local", "ray"):
        wavs[engine] = tmp_path / f"wavs-{engine}"
        result = run("decode", units, "-o", wavs[engine], "--engine", engine, "--batch-seconds", "3")
        assert result.exit_code == 0, result.output
        assert "wrote 24 files" in result.output
    names = sorted(p.relative_to(wavs["local"]) for p in wavs["local"].rglob("*.wav"))
    assert len(names) == 24
    assert sorted(p.relative_to(wavs["ray"]) for p in wavs["ray"].rglob("*.wav")) == names
    import soundfile as sf

    for name in names:  # the samples (a float WAV's PEAK chunk holds the time it was written)
        ray_audio, rate = sf.read(wavs["ray"] / name, dtype="float32")
        local_audio, local_rate = sf.read(wavs["local"] / name, dtype="float32")
        assert rate == local_rate == 16000 and ray_audio.tobytes() == local_audio.tobytes(), name
    assert not list(wavs["ray"].rglob("*.tmp"))
    again = run("decode", units, "-o", wavs["ray"], "--engine", "ray")  # resumed: everything is there
    assert again.exit_code == 0 and "24 already there" in again.output, again.output


def test_containers_are_read_by_ray_workers_as_locally(ray_cluster, small_corpus, tmp_path):
    # WebDataset members and Parquet rows go through the same reader on Ray read tasks
    import webdataset as wds
    from datasets import Audio, Dataset

    _, good = small_corpus
    with wds.TarWriter(str(tmp_path / "shard-000.tar")) as sink:
        for path in good[:8]:
            sink.write({"__key__": path.stem, "wav": path.read_bytes()})
    Dataset.from_dict({"id": [p.stem + "-hf" for p in good[8:14]],
                       "audio": [{"bytes": p.read_bytes(), "path": p.name} for p in good[8:14]]}) \
        .cast_column("audio", Audio(decode=False)).to_parquet(tmp_path / "rows.parquet")
    tok = tmp_path / "tok"
    encoder = MFCCEncoder()
    frames = torch.cat([f["mfcc"] for f in encoder.encode_batch(good[:4])])
    Tokenizer(encoder, {"mfcc": KMeans.fit(frames, 8, seed=0)}).save_pretrained(tok)
    outs = {}
    for engine in ("local", "ray"):
        outs[engine] = tmp_path / engine
        result = run("tokenize", tmp_path / "shard-{000..000}.tar", tmp_path / "rows.parquet", "-t", tok, "-o",
                     outs[engine], "--shard-size", "5", "--engine", engine, "-q")
        assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (outs["local"] / "data").iterdir())
    assert len(names) == 3 and pq.read_table(outs["ray"] / "data").num_rows == 14
    for name in names:
        assert (outs["ray"] / "data" / name).read_bytes() == (outs["local"] / "data" / name).read_bytes(), name
