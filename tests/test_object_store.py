"""Inputs in an S3 bucket, served by a real S3 server on 127.0.0.1 (moto's server mode, started
here): the real s3fs client over HTTP, no mocked client. Codes equal those of the same files on disk."""

from __future__ import annotations

import socket

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from speechtok import KMeans, MFCCEncoder, Tokenizer
from speechtok.cli import app
from speechtok.corpus import collect

from .test_corpus import write_broken, write_corpus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """A moto S3 server on 127.0.0.1; yields its endpoint. The AWS variables point clients at it."""
    pytest.importorskip("s3fs", reason="s3:// inputs need s3fs: pip install 'speechtok[s3]'")
    server_module = pytest.importorskip("moto.server", reason="the S3 tests need moto[server]")
    port = free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield endpoint
    server.stop()


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
