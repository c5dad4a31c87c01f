"""Inputs in an S3 bucket, served by a real S3 server on 127.0.0.1 (moto's server mode, started
here): the real s3fs client over HTTP, no mocked client. Codes equal those of the same files on disk."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from speechtok import KMeans, MFCCEncoder, Tokenizer
from speechtok.cli import app
from speechtok.corpus import collect

from .test_corpus import write_broken, write_corpus


def test_s3_prefix_tokenizes_as_the_same_files_on_disk(s3_server, speech_waves, tmp_path):
    import fsspec

    local = tmp_path / "audio"
    good = write_corpus(local, speech_waves, 12)
    write_broken(local / "broken")
    fs = fsspec.filesystem("s3")
    fs.mkdir("corpus")
    fs.put(str(local), "corpus/audio", recursive=True)
    encoder = MFCCEncoder()
    frames = torch.cat([f["mfcc"] for f in encoder.encode_batch(good[:4])])
    Tokenizer(encoder, {"mfcc": KMeans.fit(frames, 12, seed=0)}).save_pretrained(tmp_path / "tok")
    utterances = collect(["s3://corpus/audio"])
    assert sorted(u.id for u in utterances) == sorted(u.id for u in collect([local]))
    rows = {}
    for name, source in [("disk", local), ("s3", "s3://corpus/audio")]:
        result = CliRunner().invoke(app, ["tokenize", str(source), "-t", str(tmp_path / "tok"), "-o",
                                          str(tmp_path / name), "-q"])
        assert result.exit_code == 1, result.output  # the broken files, recorded
        rows[name] = {r["id"]: r["mfcc"] for r in pq.read_table(tmp_path / name / "data").to_pylist()}
    assert rows["s3"] == rows["disk"] and len(rows["s3"]) == 12
    errors = (tmp_path / "s3" / "errors.jsonl").read_text()
    assert errors.count("\n") == 5 and "s3://corpus/audio/broken/nan.wav" in errors
    globbed = collect(["s3://corpus/audio/spk0/*.wav"])
    assert [u.id for u in globbed] == [f"s3://corpus/audio/spk0/{p.stem}" for p in sorted(good) if p.parent.name == "spk0"]


def test_http_urls_keep_one_scheme(speech_waves, tmp_path):
    # fsspec's http file system keeps the scheme in its paths; ids and URLs must not get it twice
    import functools
    import http.server
    import threading

    import soundfile as sf

    from speechtok.audio import Reading
    from speechtok.corpus.reader import AudioReader

    sf.write(tmp_path / "one.wav", speech_waves[0][:16000], 16000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/one.wav"
        [utterance] = collect([url])
        assert utterance.path == url and utterance.id == url[: -len(".wav")]
        loaded = AudioReader(Reading(16000, 400))(utterance, 0)
        assert loaded.ok and loaded.num_samples == 16000, loaded.error
    finally:
        server.shutdown()


def test_a_missing_object_is_reported_as_missing(s3_server):
    import fsspec

    from speechtok.errors import NotFoundError

    fsspec.filesystem("s3").mkdir("empty-bucket")
    with pytest.raises(NotFoundError, match="no such file or prefix"):
        collect(["s3://empty-bucket/nothing-here.wav"])


def test_out_on_s3_resumes_after_a_kill_to_the_uninterrupted_output(s3_server, speech_waves, tmp_path):
    import signal
    import time

    import fsspec

    from speechtok.corpus import TokenizedCorpus

    from .test_corpus import cli, cli_background

    good = write_corpus(tmp_path / "audio", speech_waves, 60)
    encoder = MFCCEncoder()
    frames = torch.cat([f["mfcc"] for f in encoder.encode_batch(good[:4])])
    Tokenizer(encoder, {"mfcc": KMeans.fit(frames, 12, seed=0)}).save_pretrained(tmp_path / "tok")
    args = ["tokenize", tmp_path / "audio", "-t", tmp_path / "tok", "--shard-size", "2", "--workers", "1", "-q"]
    assert cli(*args, "-o", tmp_path / "whole").returncode == 0
    fs = fsspec.filesystem("s3")
    out = "s3://results/run1"

    def finished() -> list[str]:
        fs.invalidate_cache()
        return fs.glob("results/run1/data/*.parquet")

    process = cli_background(*args, "-o", out)
    while process.poll() is None and len(finished()) < 3:
        time.sleep(0.02)
    assert process.poll() is None, "the job finished before it could be killed; make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = len(finished())
    assert 3 <= kept < 30 and not fs.exists("results/run1/manifest.json")

    again = cli(*args[:-1], "-o", out)  # not quiet: it reports the shards it kept
    assert again.returncode == 0, again.stderr
    assert f"{kept} finished shards kept" in again.stderr + again.stdout
    fs.invalidate_cache()
    assert len(finished()) == 30 and not [p for p in fs.find("results/run1") if p.endswith(".tmp")]
    on_s3 = {r["id"]: r["mfcc"] for t in TokenizedCorpus.open(out).tables(["id", "mfcc"]) for r in t.to_pylist()}
    assert on_s3 == {r["id"]: r["mfcc"] for r in pq.read_table(tmp_path / "whole" / "data").to_pylist()}
    # commands that read a corpus take its URL
    for source, dest in [(out, tmp_path / "km-s3"), (tmp_path / "whole", tmp_path / "km-disk")]:
        assert cli("export", source, "-f", "km", "-o", dest).returncode == 0
    assert (tmp_path / "km-s3" / "data.km").read_text() == (tmp_path / "km-disk" / "data.km").read_text()
    # a different job into the same URL is refused, as for a directory
    other = cli(*args, "--dedup", "-o", out)
    assert other.returncode == 2 and "different job" in other.stderr


def test_an_output_url_with_pattern_characters(s3_server, speech_waves, tmp_path):
    # `[`, `?` and `*` in the prefix are names, not patterns: shards are listed and copied as named
    from speechtok.corpus import TokenizedCorpus

    good = write_corpus(tmp_path / "audio", speech_waves, 4)
    encoder = MFCCEncoder()
    frames = torch.cat([f["mfcc"] for f in encoder.encode_batch(good)])
    Tokenizer(encoder, {"mfcc": KMeans.fit(frames, 8, seed=0)}).save_pretrained(tmp_path / "tok")
    out = "s3://results/exp[1]?/out"
    args = ["tokenize", str(tmp_path / "audio"), "-t", str(tmp_path / "tok"), "--shard-size", "2", "-o", out]
    for _ in range(2):  # the second run finds both shards done
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    assert "2 finished shards kept" in result.output
    assert len(TokenizedCorpus.open(out)) == 4
