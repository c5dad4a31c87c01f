"""Corpus jobs run as a user would: the CLI in a subprocess, on generated speech and broken files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from speechtok import KMeans, SSLEncoder, Tokenizer
from speechtok.corpus import InputError, collect
from speechtok.corpus.inputs import shard_range
from speechtok.corpus.sinks import Reservoir

from .conftest import SR


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "speechtok.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600, **kwargs)


def cli_background(*args):
    return subprocess.Popen([sys.executable, "-m", "speechtok.cli", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def write_corpus(directory: Path, waves, count: int, seed: int = 0) -> list[Path]:
    """`count` utterances of 0.3-3 s cut from the speech, in two sub-directories."""
    rng = np.random.default_rng(seed)
    joined = np.concatenate(waves)
    paths = []
    for i in range(count):
        length = int(rng.integers(int(0.3 * SR), int(3 * SR)))
        start = int(rng.integers(0, len(joined) - length))
        path = directory / f"spk{i % 2}" / f"utt{i:04d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, joined[start : start + length], SR)
        paths.append(path)
    return paths


def write_broken(directory: Path) -> dict[str, str]:
    """Five broken files of different kinds -> the words their error reason must contain."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "text.wav").write_text("this is not audio")
    sf.write(directory / "empty.wav", np.zeros(0, np.float32), SR)
    nan = np.full(SR, 0.1, np.float32)
    nan[100] = np.nan
    sf.write(directory / "nan.wav", nan, SR, subtype="FLOAT")
    sf.write(directory / "short.wav", np.zeros(100, np.float32), SR)
    (directory / "zero.flac").write_bytes(b"")
    return {"broken/text": "unreadable", "broken/empty": "empty", "broken/nan": "NaN",
            "broken/short": "too short", "broken/zero": "unreadable"}


@pytest.fixture(scope="module")
def hubert_tokenizer(tmp_path_factory, model_dir, speech_waves):
    """A tokenizer directory: tiny random HuBERT (group norm, base layout), layer 2, K=20."""
    encoder = SSLEncoder.from_pretrained(str(model_dir("hubert-group")), layers=[2])
    frames = torch.cat([f["L2"] for f in encoder.encode_batch(speech_waves, sample_rate=SR)])
    directory = tmp_path_factory.mktemp("hubert_tok")
    Tokenizer(encoder, {"L2": KMeans.fit(frames, 20, seed=0)}).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, speech_waves):
    root = tmp_path_factory.mktemp("corpus")
    good = write_corpus(root, speech_waves, 195)
    broken = write_broken(root / "broken")
    return root, good, broken


def read_out(out: Path):
    return pq.read_table(out / "data").sort_by("id").to_pylist()


# --- inputs -----------------------------------------------------------------------------------

def test_inputs_name_utterances_stably(tmp_path, speech_waves):
    paths = write_corpus(tmp_path / "audio", speech_waves, 4)
    assert [u.id for u in collect([tmp_path / "audio"])] == ["spk0/utt0000", "spk0/utt0002", "spk1/utt0001", "spk1/utt0003"]
    tsv = tmp_path / "train.tsv"
    tsv.write_text(f"{tmp_path / 'audio'}\n" + "".join(f"{p.relative_to(tmp_path / 'audio')}\t{len(sf.read(p)[0])}\n" for p in paths))
    assert [u.id for u in collect([tsv])] == ["spk0/utt0000", "spk1/utt0001", "spk0/utt0002", "spk1/utt0003"]
    jsonl = tmp_path / "segments.jsonl"
    jsonl.write_text(json.dumps({"id": "a", "path": str(paths[0]), "start": 0.1, "duration": 0.2}) + "\n")
    [segment] = collect([jsonl])
    assert (segment.id, segment.start, segment.duration) == ("a", 0.1, 0.2)
    listing = tmp_path / "files.txt"
    listing.write_text("audio/spk0/utt0000.wav\n")
    assert [u.path for u in collect([listing])] == [str(tmp_path / "audio/spk0/utt0000.wav")]
    assert len(collect([str(tmp_path / "audio" / "*" / "*.wav")])) == 4


def test_duplicate_ids_are_refused_before_running(tmp_path, speech_waves):
    write_corpus(tmp_path / "a", speech_waves, 2)
    with pytest.raises(InputError, match="duplicate utterance id"):
        collect([tmp_path / "a", tmp_path / "a"])


def test_shard_ranges_partition_the_corpus():
    for total in (0, 1, 7, 100, 1001):
        for nshard in (1, 3, 8):
            parts = [shard_range(total, r, nshard) for r in range(nshard)]
            assert [i for p in parts for i in p] == list(range(total))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_reservoir_keeps_a_uniform_sample():
    # Each of 1000 rows (13 utterances) should be kept with probability 100/1000; count over 400 seeds.
    counts = np.zeros(1000)
    for seed in range(400):
        r = Reservoir(100, seed)
        for index, block in enumerate(np.array_split(np.arange(1000, dtype=np.float32)[:, None], 13)):
            r.add(block, index)
        sample = r.sample()[:, 0].astype(int)
        assert len(set(sample)) == 100 and r.seen == 1000
        counts[sample] += 1
    frequency = counts / 400
    assert abs(frequency.mean() - 0.1) < 1e-9
    # binomial(400, 0.1) per row: sd 0.015; early and late rows alike
    assert abs(frequency[:500].mean() - frequency[500:].mean()) < 0.01
    assert frequency.min() > 0.02 and frequency.max() < 0.2


def test_reservoir_sample_does_not_depend_on_arrival_order():
    # What engines that finish work in any order rely on: the same frames in the same order.
    rng = np.random.default_rng(0)
    utterances = [rng.standard_normal((int(n), 3)).astype(np.float32) for n in rng.integers(1, 400, 60)]
    samples = []
    for order in (range(60), rng.permutation(60), range(59, -1, -1)):
        r = Reservoir(500, seed=7)
        for index in order:
            r.add(utterances[index], int(index))
        samples.append(r.sample())
    assert samples[0].shape == (500, 3)
    for other in samples[1:]:
        np.testing.assert_array_equal(samples[0], other)
    # the bottom-k definition, computed another way: all keys at once, the 500 smallest, by key
    keys = np.concatenate([np.random.default_rng((7, i)).random(len(u)) for i, u in enumerate(utterances)])
    frames = np.concatenate(utterances)
    np.testing.assert_array_equal(samples[0], frames[np.argsort(keys)[:500]])


# --- tokenize ---------------------------------------------------------------------------------

def test_tokenize_corpus_with_broken_files(tmp_path, corpus, hubert_tokenizer):
    root, good, broken = corpus
    out = tmp_path / "out"
    result = cli("tokenize", root, "-t", hubert_tokenizer, "-o", out, "--shard-size", "50", "--batch-seconds", "20")
    assert result.returncode == 1, result.stderr
    rows = read_out(out)
    assert len(rows) == 195
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert {e["id"]: e["reason"] for e in errors}.keys() == broken.keys()
    for e in errors:
        assert broken[e["id"]] in e["reason"], e
        assert e["id"] in result.stderr  # the summary names them
    # Every row equals encoding that file alone (batch 1).
    tok = Tokenizer.from_pretrained(hubert_tokenizer)
    for row in rows[::20]:
        alone = tok.encode(row["path"])
        assert row["L2"] == alone.stream("L2").tolist()
        assert row["num_samples"] == alone.num_samples
    # readable as-is by pandas and datasets
    import datasets
    import pandas as pd

    frame = pd.read_parquet(out / "data")
    assert len(frame) == 195 and set(frame["id"]) == {r["id"] for r in rows}
    loaded = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train",
                                   cache_dir=str(tmp_path / "hf_cache"))
    assert loaded.num_rows == 195 and loaded.features["L2"].feature.dtype == "int16"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == 195 and manifest["errors"] == 5 and len(manifest["shards"]) == 4
    assert manifest["speechtok_version"] and manifest["command"][1] == "tokenize"
    assert not list(out.rglob("*.tmp"))


def test_tokenize_dedup_and_segments(tmp_path, corpus, hubert_tokenizer):
    root, good, _ = corpus
    jsonl = tmp_path / "segments.jsonl"
    jsonl.write_text("".join(json.dumps({"id": f"seg{i}", "path": str(good[i]), "start": 0.1, "duration": 0.25}) + "\n"
                             for i in range(3)))
    out = tmp_path / "out"
    result = cli("tokenize", jsonl, "-t", hubert_tokenizer, "-o", out, "--dedup", "-q")
    assert result.returncode == 0, result.stderr
    tok = Tokenizer.from_pretrained(hubert_tokenizer)
    for i, row in enumerate(read_out(out)):
        wave, rate = sf.read(good[i], dtype="float32")
        units = tok.encode(wave[int(0.1 * rate) : int(0.1 * rate) + int(0.25 * rate)], sample_rate=rate).dedup()
        assert row["num_samples"] == int(0.25 * SR)
        assert row["L2"] == units.stream("L2").tolist()
        assert row["L2_durations"] == units.durations.tolist()
        assert (row["start"], row["duration"]) == (0.1, 0.25)


def test_different_job_into_same_out_is_refused(tmp_path, corpus, hubert_tokenizer):
    root, good, _ = corpus
    out = tmp_path / "out"
    assert cli("tokenize", *good[:3], "-t", hubert_tokenizer, "-o", out, "-q").returncode == 0
    again = cli("tokenize", *good[:3], "-t", hubert_tokenizer, "-o", out, "-q")
    assert again.returncode == 0  # same job: nothing to do, same output
    other = cli("tokenize", *good[:3], "-t", hubert_tokenizer, "-o", out, "-q", "--dedup")
    assert other.returncode == 2 and "different job" in other.stderr and "dedup" in other.stderr


def test_strict_stops_at_the_first_bad_file(tmp_path, corpus, hubert_tokenizer):
    root, good, _ = corpus
    out = tmp_path / "out"
    result = cli("tokenize", good[0], root / "broken" / "nan.wav", good[1], "-t", hubert_tokenizer, "-o", out, "--strict")
    assert result.returncode == 1
    assert "--strict" in result.stderr and "nan.wav" in result.stderr and "NaN" in result.stderr
    assert not list((out / "data").glob("*.parquet")) and not (out / "manifest.json").exists()


def test_killed_jobs_resume_to_the_uninterrupted_output(tmp_path, corpus, hubert_tokenizer):
    root, good, _ = corpus
    inputs = good[:120]
    listing = tmp_path / "files.txt"
    listing.write_text("".join(f"{p}\n" for p in inputs))
    args = ["tokenize", listing, "-t", hubert_tokenizer, "--shard-size", "8", "--batch-seconds", "5", "--workers", "1", "-q"]
    whole = tmp_path / "whole"
    assert cli(*args, "-o", whole).returncode == 0
    resumed = tmp_path / "resumed"
    kills = 0
    for wanted in (1, 5, 10):  # kill once at least this many shards are complete
        process = cli_background(*args, "-o", resumed)
        while process.poll() is None and len(list((resumed / "data").glob("*.parquet"))) < wanted:
            time.sleep(0.02)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills == 3, "the job finished before it could be killed; make it longer"
    assert cli(*args, "-o", resumed).returncode == 0
    assert read_out(resumed) == read_out(whole)
    assert not list(resumed.rglob("*.tmp"))
    assert len(list((resumed / "data").glob("*.parquet"))) == 15


def test_one_writer_per_output_and_a_killed_holder_does_not_block(tmp_path, corpus, hubert_tokenizer):
    root, good, _ = corpus
    listing = tmp_path / "files.txt"
    listing.write_text("".join(f"{p}\n" for p in good[:80]))
    args = ["tokenize", listing, "-t", hubert_tokenizer, "--shard-size", "8", "--workers", "1", "-q"]
    out = tmp_path / "out"
    first = cli_background(*args, "-o", out)
    lock = out / ".lock"
    while first.poll() is None and not (lock.exists() and lock.read_text() and list((out / "data").glob("*.parquet"))):
        time.sleep(0.02)
    assert first.poll() is None, "the first job finished before it could be paused; make it longer"
    first.send_signal(signal.SIGSTOP)  # paused mid-job, still holding OUT, however fast the machine
    # the same job and a different one, started while the first holds OUT
    tries = [subprocess.Popen([sys.executable, "-m", "speechtok.cli", *map(str, extra)], stderr=subprocess.PIPE,
                              text=True) for extra in ([*args, "-o", out], [*args, "--dedup", "-o", out])]
    for process in tries:
        process.wait(timeout=600)
    first.send_signal(signal.SIGKILL)
    first.wait()
    for refused in tries:
        stderr = refused.stderr.read()
        assert refused.returncode == 2, stderr
        assert f"pid {first.pid}" in stderr and "another speechtok job" in stderr and "Traceback" not in stderr
    # the lock died with its holder: a new run proceeds, resumes, and ends as an uninterrupted run
    assert cli(*args, "-o", out).returncode == 0
    whole = tmp_path / "whole"
    assert cli(*args, "-o", whole).returncode == 0
    assert read_out(out) == read_out(whole)
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("damage", ["zeroed", "truncated"])
def test_a_damaged_finished_shard_is_redone_on_resume(tmp_path, corpus, hubert_tokenizer, damage):
    root, good, _ = corpus
    args = ["tokenize", *good[:20], "-t", hubert_tokenizer, "--shard-size", "8"]
    out = tmp_path / "out"
    assert cli(*args, "-o", out, "-q").returncode == 0
    expected = read_out(out)
    shard = sorted((out / "data").glob("*.parquet"))[1]
    data = bytearray(shard.read_bytes())
    if damage == "zeroed":  # 1,000 bytes zeroed in place, footer intact
        data[100:1100] = bytes(1000)
    else:
        data = data[: len(data) // 2]
    shard.write_bytes(bytes(data))
    again = cli(*args, "-o", out)
    assert again.returncode == 0, again.stderr
    assert shard.name in again.stderr and "written again" in again.stderr
    assert read_out(out) == expected
    assert cli(*args, "-o", out, "-q").stderr == ""  # intact now: nothing to redo


def test_ranks_split_the_corpus(tmp_path, corpus, hubert_tokenizer):
    root, good, _ = corpus
    one = tmp_path / "one"
    assert cli("tokenize", *good[:10], "-t", hubert_tokenizer, "-o", one, "-q").returncode == 0
    split = tmp_path / "split"
    for rank in range(3):
        result = cli("tokenize", *good[:10], "-t", hubert_tokenizer, "-o", split, "-q", "--rank", rank, "--nshard", 3)
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in split.glob("manifest*.json")) == [f"manifest-{r}-of-3.json" for r in range(3)]
    assert read_out(split) == read_out(one)


def test_ranks_of_one_job_write_into_one_out_at_the_same_time(tmp_path, corpus, hubert_tokenizer):
    root, good, _ = corpus
    args = ["tokenize", *good[:12], "-t", hubert_tokenizer, "-q", "--nshard", "3"]
    together = tmp_path / "together"
    ranks = [subprocess.Popen([sys.executable, "-m", "speechtok.cli", *map(str, args), "--rank", str(r), "-o",
                               str(together)], stderr=subprocess.PIPE, text=True) for r in range(3)]
    for process in ranks:
        assert process.wait(timeout=600) == 0, process.stderr.read()
    one = tmp_path / "one"
    assert cli("tokenize", *good[:12], "-t", hubert_tokenizer, "-o", one, "-q").returncode == 0
    assert read_out(together) == read_out(one)


# --- export -----------------------------------------------------------------------------------

def fairseq_labels(model_dir: Path, km: KMeans, layer: int, path: Path) -> list[int]:
    """fairseq's dump_km_label.py, independently: batch 1, full HF forward, ApplyKmeans' formula."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir).eval()
    wave, _ = sf.read(path, dtype="float32")
    with torch.no_grad():
        x = model(torch.from_numpy(wave)[None], output_hidden_states=True).hidden_states[layer][0].double().numpy()
    c = km.centroids.double().numpy().T  # ApplyKmeans: C [D, K], Cnorm [1, K]
    dist = (x**2).sum(1, keepdims=True) - 2 * x @ c + (c**2).sum(0, keepdims=True)
    return dist.argmin(1).tolist()


def test_export_km_equals_fairseq_labels(tmp_path, corpus, hubert_tokenizer, model_dir):
    root, good, _ = corpus
    tsv = tmp_path / "valid.tsv"
    chosen = good[5:17]
    tsv.write_text(f"{root}\n" + "".join(f"{p.relative_to(root)}\t{sf.info(p).frames}\n" for p in chosen))
    out = tmp_path / "out"
    assert cli("tokenize", tsv, "-t", hubert_tokenizer, "-o", out, "-q").returncode == 0
    dest = tmp_path / "labels"
    result = cli("export", out, "--format", "km", "-o", dest)
    assert result.returncode == 0, result.stderr
    lines = (dest / "valid.km").read_text().splitlines()
    km = KMeans.load(hubert_tokenizer / "kmeans_L2.safetensors")
    assert len(lines) == len(chosen)
    for line, path in zip(lines, chosen):
        assert [int(t) for t in line.split()] == fairseq_labels(model_dir("hubert-group"), km, 2, path)
    assert (dest / "dict.km.txt").read_text().splitlines() == [f"{i} 1" for i in range(20)]
    for fmt in ("txt", "jsonl", "npy"):
        assert cli("export", out, "--format", fmt, "-o", tmp_path / fmt).returncode == 0
    first = json.loads((tmp_path / "jsonl" / "valid.jsonl").read_text().splitlines()[0])
    assert first["L2"] == [int(t) for t in lines[0].split()]
    assert np.load(tmp_path / "npy" / f"{first['id']}.npy").tolist() == first["L2"]
    assert (tmp_path / "txt" / "valid.txt").read_text().splitlines()[0] == f"{first['id']}\t{lines[0]}"


def test_export_km_refuses_when_rows_are_missing(tmp_path, corpus, hubert_tokenizer):
    root, good, _ = corpus
    out = tmp_path / "out"
    assert cli("tokenize", good[0], root / "broken" / "text.wav", "-t", hubert_tokenizer, "-o", out, "-q").returncode == 1
    result = cli("export", out, "--format", "km", "-o", tmp_path / "km")
    assert result.returncode == 2 and "would not line up" in result.stderr


@pytest.fixture(scope="module")
def mfcc_tokenizer(tmp_path_factory, speech_waves):
    from speechtok import MFCCEncoder

    encoder = MFCCEncoder()
    frames = torch.cat([f["mfcc"] for f in encoder.encode_batch(speech_waves, sample_rate=SR)])
    directory = tmp_path_factory.mktemp("mfcc_tok")
    Tokenizer(encoder, {"mfcc": KMeans.fit(frames, 16, seed=0)}).save_pretrained(directory)
    return directory


def test_export_streams_shards_of_every_rank_in_input_order(tmp_path, corpus, mfcc_tokenizer):
    # 2 ranks x 3 shards, finished in reverse rank order: the .km lines follow the listing.
    from speechtok import load

    _, good, _ = corpus
    chosen = [good[i] for i in (40, 3, 17, 8, 29, 11, 0, 35, 22, 5, 14)]
    listing = tmp_path / "valid.txt"
    listing.write_text("".join(f"{p}\n" for p in chosen))
    out = tmp_path / "out"
    for rank in (1, 0):
        result = cli("tokenize", listing, "-t", mfcc_tokenizer, "-o", out, "--rank", rank, "--nshard", 2,
                     "--shard-size", 2, "-q")
        assert result.returncode == 0, result.stderr
    assert len(list((out / "data").glob("*.parquet"))) == 6
    result = cli("export", out, "--format", "km", "-o", tmp_path / "km")
    assert result.returncode == 0, result.stderr
    tok = load(mfcc_tokenizer)
    expected = [" ".join(map(str, tok.encode(p).codes[:, 0].tolist())) for p in chosen]  # each file alone
    assert (tmp_path / "km" / "data.km").read_text().splitlines() == expected
    assert not list((tmp_path / "km").glob("*.tmp"))
    stats = json.loads(cli("eval", "stats", out, "--json").stdout)
    assert stats["tokens"] == sum(len(line.split()) for line in expected)


def test_ids_with_line_breaks_are_refused_by_text_exports_and_kept_by_jsonl(tmp_path, corpus, mfcc_tokenizer):
    _, good, _ = corpus
    manifest = tmp_path / "odd.jsonl"
    ids = ["plain", "two\nlines", "tab\there"]
    manifest.write_text("".join(json.dumps({"id": i, "path": str(p)}) + "\n" for i, p in zip(ids, good)))
    out = tmp_path / "out"
    assert cli("tokenize", manifest, "-t", mfcc_tokenizer, "-o", out, "-q").returncode == 0
    result = cli("export", out, "--format", "txt", "-o", tmp_path / "txt")
    assert result.returncode == 2 and "two\\nlines" in result.stderr and "jsonl" in result.stderr, result.stderr
    assert not (tmp_path / "txt" / "data.txt").exists() and not list((tmp_path / "txt").glob("*.tmp"))
    result = cli("export", out, "--format", "jsonl", "-o", tmp_path / "jsonl")
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "jsonl" / "data.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ids


def test_odd_names_are_kept_or_recorded_never_lost(tmp_path, speech_waves, mfcc_tokenizer):
    import os

    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "plain.wav", speech_waves[0][:SR], SR)
    sf.write(audio / "tmp.wav", speech_waves[1][:SR], SR)
    os.rename(bytes(audio / "tmp.wav"), bytes(audio) + b"/caf\xe9.wav")  # a name that is not UTF-8
    sf.write(audio / "two\nlines.wav", speech_waves[2][:SR], SR)
    (audio / "dangling.wav").symlink_to(audio / "missing.wav")
    os.mkfifo(audio / "pipe.wav")
    out = tmp_path / "out"
    result = cli("tokenize", audio, "-t", mfcc_tokenizer, "-o", out, "-q")
    assert result.returncode == 1, result.stderr  # the link and the FIFO failed, and are listed
    rows = {r["id"]: r for r in read_out(out)}
    assert set(rows) == {"plain", "caf\\xe9", "two\nlines"}
    from speechtok import load

    expected = load(mfcc_tokenizer).encode(speech_waves[1][:SR], SR).codes[:, 0].tolist()
    assert rows["caf\\xe9"]["mfcc"] == expected and rows["caf\\xe9"]["path"].endswith("caf\\xe9.wav")
    errors = {e["id"]: e["reason"] for e in map(json.loads, (out / "errors.jsonl").read_text().splitlines())}
    assert "broken symbolic link" in errors["dangling"] and "not a regular file" in errors["pipe"]
    # `encode` writes one line per file whatever its name
    printed = cli("encode", audio / "two\nlines.wav", os.fsdecode(bytes(audio) + b"/caf\xe9.wav"), "-t", mfcc_tokenizer)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{audio}/two\\nlines.wav\t") and "caf\\xe9.wav\t" in lines[1]


# --- fit-kmeans, extract, import ----------------------------------------------------------------

def test_fit_kmeans_several_layers_in_one_pass(tmp_path, corpus, model_dir):
    root, good, _ = corpus
    out = tmp_path / "tok"
    result = cli("fit-kmeans", *good[:30], "--encoder", model_dir("hubert-group"), "--layer", "1,3", "-k", "12",
                 "-o", out, "--max-frames", "2000", "-q")
    assert result.returncode == 0, result.stderr
    tok = Tokenizer.from_pretrained(out)
    assert tok.streams == ("L1", "L3") and tok.vocab_sizes == (12, 12)
    for stream in tok.streams:
        info = json.loads((out / f"kmeans_{stream}.json").read_text())
        assert info["frames"] == 2000 and info["frames_seen"] > 2000 and info["files"] == 30
    # and it tokenizes a corpus directly
    assert cli("tokenize", *good[:2], "-t", out, "-o", tmp_path / "units", "-q").returncode == 0


def test_fit_kmeans_mfcc(tmp_path, corpus):
    root, good, _ = corpus
    out = tmp_path / "tok"
    result = cli("fit-kmeans", *good[:10], "--encoder", "mfcc", "-k", "16", "-o", out, "--percent", "50", "-q")
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "kmeans_mfcc.json").read_text())
    assert info["files"] == 5 and info["k"] == 16


def test_extract_parquet_and_fairseq_layout(tmp_path, corpus, model_dir):
    root, good, _ = corpus
    chosen = good[:6]
    encoder = SSLEncoder.from_pretrained(str(model_dir("hubert-group")), layers=[1, 2])
    alone = [encoder.encode(p) for p in chosen]

    out = tmp_path / "feats"
    result = cli("extract", *chosen, "--encoder", model_dir("hubert-group"), "--layers", "1,2", "-o", out, "-q")
    assert result.returncode == 0, result.stderr
    rows = sorted(pq.read_table(out / "data").to_pylist(), key=lambda r: r["index"])
    for row, features in zip(rows, alone):
        np.testing.assert_allclose(np.asarray(row["L2"]), features["L2"].numpy(), atol=1e-5)

    tsv = tmp_path / "train.tsv"
    tsv.write_text(f"{root}\n" + "".join(f"{p.relative_to(root)}\t{sf.info(p).frames}\n" for p in chosen))
    fair = tmp_path / "fairseq"
    result = cli("extract", tsv, "--encoder", model_dir("hubert-group"), "--layers", "1,2", "-o", fair,
                 "--format", "fairseq", "--rank", 1, "--nshard", 2, "-q")
    assert result.returncode == 0, result.stderr
    feats = np.load(fair / "L1" / "train_1_2.npy")
    lengths = [int(n) for n in (fair / "L1" / "train_1_2.len").read_text().split()]
    mine = alone[3:6]  # rank 1 of 2 over 6 lines
    assert lengths == [len(f["L1"]) for f in mine]
    np.testing.assert_allclose(feats, np.concatenate([f["L1"].numpy() for f in mine]), atol=1e-5)


def test_import_sklearn_kmeans(tmp_path, corpus, model_dir):
    import joblib
    from sklearn.cluster import MiniBatchKMeans

    root, good, _ = corpus
    encoder = SSLEncoder.from_pretrained(str(model_dir("hubert-group")), layers=[2])
    feats = torch.cat([encoder.encode(p)["L2"] for p in good[:10]]).numpy()
    sk = MiniBatchKMeans(n_clusters=8, n_init=1, random_state=0).fit(feats)
    joblib.dump(sk, tmp_path / "km.bin")
    out = tmp_path / "tok"
    result = cli("import", "kmeans", tmp_path / "km.bin", "--encoder", model_dir("hubert-group"), "--layer", 2, "-o", out)
    assert result.returncode == 0, result.stderr
    units = Tokenizer.from_pretrained(out).encode(good[0])
    assert units.stream("L2").tolist() == sk.predict(encoder.encode(good[0])["L2"].numpy()).tolist()
    wrong = cli("import", "kmeans", tmp_path / "km.bin", "--encoder", "mfcc", "-o", tmp_path / "bad")
    assert wrong.returncode == 2 and "dims" in wrong.stderr


def test_import_speechbrain_repo_layout(tmp_path, model_dir):
    import joblib
    from sklearn.cluster import MiniBatchKMeans

    repo = tmp_path / "repo"
    (repo / "kmeans").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for layer in (1, 3):
        km = MiniBatchKMeans(n_clusters=5, n_init=1, random_state=layer).fit(rng.standard_normal((200, 64)))
        joblib.dump(km, repo / "kmeans" / f"LibriSpeech_hubert_k5_L{layer}.pt")
    out = tmp_path / "tok"
    result = cli("import", "speechbrain", repo, "--encoder", model_dir("hubert-group"), "-o", out)
    assert result.returncode == 0, result.stderr
    assert Tokenizer.from_pretrained(out).streams == ("L1", "L3")


# --- memory -----------------------------------------------------------------------------------

def peak_rss_kib(*args) -> int:
    code = ("import resource, sys; from speechtok.cli import app\n"
            "try:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


def test_memory_does_not_grow_with_corpus_size(tmp_path, speech_waves, hubert_tokenizer):
    small = write_corpus(tmp_path / "small", speech_waves, 100, seed=1)
    write_corpus(tmp_path / "large", speech_waves, 1000, seed=2)
    assert len(small) == 100
    # Memory is bounded by the batch and read-ahead window (4 batches), reached by both corpora here
    # (100 files of ~1.6 s fill two windows of 4 x 20 s); beyond that it must not grow.
    common = ["tokenize", "-t", hubert_tokenizer, "-q", "--shard-size", "100", "--batch-seconds", "20"]
    rss_small = peak_rss_kib(*common, tmp_path / "small", "-o", tmp_path / "out_small")
    rss_large = peak_rss_kib(*common, tmp_path / "large", "-o", tmp_path / "out_large")
    assert rss_large <= 1.2 * rss_small, (rss_small, rss_large)


def test_per_utterance_files_stay_inside_their_directory(tmp_path):
    # ids of explicit absolute paths are absolute; decode / export npy once wrote beside the source audio
    from speechtok.corpus.inputs import file_for_id

    for uid in ["/data/spk1/utt1", "../../etc/x", "a/./b/../c", "", "plain"]:
        path = file_for_id(tmp_path, uid, ".wav")
        assert path.resolve().is_relative_to(tmp_path.resolve()) and path.name.endswith(".wav"), uid
    assert file_for_id(tmp_path, "/data/spk1/utt1", ".wav") == tmp_path / "data" / "spk1" / "utt1.wav"
    assert file_for_id(tmp_path, "spk1/utt1", ".L9.npy") == tmp_path / "spk1" / "utt1.L9.npy"


@pytest.mark.parametrize("root", ["/data/x", "/data/x/", "rel", ".", "/"])
def test_tsv_paths_are_joined_as_pathlib_joins_them(tmp_path, root):
    # from_tsv joins strings where pathlib would not change them (speed); the paths must not differ
    from speechtok.corpus.inputs import from_tsv

    relatives = ["a/b.wav", "a//b.wav", "./a.wav", "a/./b.wav", "x.flac", "../up.wav", "a/../b.wav", "sp ace/é.wav"]
    tsv = tmp_path / "m.tsv"
    tsv.write_text(f"{root}\n" + "".join(f"{r}\t16000\n" for r in relatives))
    assert [u.path for u in from_tsv(tsv)] == [str(Path(root) / r) for r in relatives]


def test_fast_manifest_helpers_equal_the_library_functions():
    # ids and the job digest are written out by hand for speed: they must stay what
    # os.path.splitext and json.dumps give (a changed digest would refuse to resume old jobs)
    import hashlib
    import os

    from speechtok.corpus.inputs import Utterance, _strip_ext
    from speechtok.corpus.sinks import utterance_digest

    paths = ["a/b.flac", "a.b/c", ".hidden", "a/.hidden", "a/..x", "a/b.", "a/b..flac", "x", "", ".", "..",
             "a/b.c/d.e.f", "dir.d/", "ü/é.wav", "a/.b.c", "/abs/x.wav", "a//b.wav"]
    for p in paths:
        root, ext = os.path.splitext(p)
        assert _strip_ext(p) == (root if ext else p), p
    odd = ['plain', 'quote"d', 'back\\slash', 'tab\there', 'nl\nhere', 'ü', '\x7f', 'sp ace', 'emoji 🎙']
    utterances = [Utterance(i, p, s, d) for i in odd for p in odd[:3]
                  for s, d in [(None, None), (0.1, 2.5), (1e-7, 3.0), (float("nan"), float("inf")), (12.0, None)]]
    reference = hashlib.sha256()
    for u in utterances:
        reference.update(json.dumps([u.id, u.path, u.start, u.duration]).encode())
    assert utterance_digest(utterances) == reference.hexdigest()
