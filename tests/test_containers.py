"""Audio kept inside other files - Hugging Face datasets (Parquet, `save_to_disk`) and WebDataset
tars - tokenizes to the codes the same audio gives as plain files. The containers are written by
the libraries that define them (datasets, webdataset); speechtok reads them with pyarrow / tarfile."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from speechtok import KMeans, MFCCEncoder, Tokenizer
from speechtok.cli import app
from speechtok.corpus import collect
from speechtok.corpus.containers import expand_braces

from .conftest import SR


@pytest.fixture(scope="module")
def clips(speech_waves, tmp_path_factory):
    """Six utterances as plain FLAC files (the reference), their bytes, and an MFCC tokenizer."""
    root = tmp_path_factory.mktemp("clips")
    joined = np.concatenate(speech_waves)
    files = {}
    for i in range(6):
        path = root / "files" / f"utt{i}.flac"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, joined[i * 9000 : i * 9000 + 12000 + 3000 * i], SR)
        files[f"utt{i}"] = path
    encoder = MFCCEncoder()
    frames = torch.cat([f["mfcc"] for f in encoder.encode_batch(speech_waves, sample_rate=SR)])
    Tokenizer(encoder, {"mfcc": KMeans.fit(frames, 16, seed=0)}).save_pretrained(root / "tok")
    return root, files


def tokenize(inputs, tok, out, *extra):
    result = CliRunner().invoke(app, ["tokenize", *map(str, inputs), "-t", str(tok), "-o", str(out), "-q", *extra])
    assert result.exit_code == 0, result.output
    return {r["id"]: r for r in pq.read_table(out / "data").to_pylist()}


@pytest.fixture(scope="module")
def reference(clips, tmp_path_factory):
    root, files = clips
    rows = tokenize([root / "files"], root / "tok", tmp_path_factory.mktemp("ref") / "out")
    return {uid: row["mfcc"] for uid, row in rows.items()}


def hf_dataset(files, with_id=True):
    from datasets import Audio, Dataset

    columns = {"audio": [{"bytes": p.read_bytes(), "path": p.name} for p in files.values()],
               "text": [f"words of {uid}" for uid in files]}
    if with_id:
        columns = {"id": list(files), **columns}
    return Dataset.from_dict(columns).cast_column("audio", Audio(decode=False))


def test_hugging_face_parquet_and_save_to_disk(clips, reference, tmp_path):
    root, files = clips
    dataset = hf_dataset(files)
    dataset.to_parquet(tmp_path / "train.parquet")
    dataset.save_to_disk(tmp_path / "saved")
    for source in (tmp_path / "train.parquet", tmp_path / "saved"):
        rows = tokenize([source], root / "tok", tmp_path / f"out-{source.name}")
        assert {uid: row["mfcc"] for uid, row in rows.items()} == reference, source
        assert rows["utt3"]["path"] == (f"{source}#3" if source.suffix else f"{source / 'data-00000-of-00001.arrow'}#3")
    # no id column: ids are the audio's paths without their extension; --id-column picks another
    hf_dataset(files, with_id=False).to_parquet(tmp_path / "noid.parquet")
    assert [u.id for u in collect([tmp_path / "noid.parquet"])] == list(files)
    assert [u.id for u in collect([tmp_path / "train.parquet"], id_column="text")] == [f"words of {u}" for u in files]


def test_parquet_with_sample_arrays(clips, reference, tmp_path):
    # the other audio struct: decoded samples and their rate
    root, files = clips
    waves = [sf.read(p, dtype="float32")[0] for p in files.values()]
    audio = pa.array([{"array": w.tolist(), "sampling_rate": SR} for w in waves],
                     type=pa.struct([("array", pa.list_(pa.float32())), ("sampling_rate", pa.int64())]))
    pq.write_table(pa.table({"id": list(files), "audio": audio}), tmp_path / "arrays.parquet", row_group_size=2)
    rows = tokenize([tmp_path / "arrays.parquet"], root / "tok", tmp_path / "out")
    assert {uid: row["mfcc"] for uid, row in rows.items()} == reference


def test_webdataset_shards_with_a_brace_pattern(clips, reference, tmp_path):
    import webdataset as wds

    root, files = clips
    names = list(files)
    for shard in range(2):
        with wds.TarWriter(str(tmp_path / f"train-{shard:03d}.tar")) as sink:
            for uid in names[shard * 3 : shard * 3 + 3]:
                sink.write({"__key__": uid, "flac": files[uid].read_bytes(), "json": {"text": uid}})
    pattern = str(tmp_path / "train-{000..001}.tar")
    assert expand_braces(pattern) == [str(tmp_path / "train-000.tar"), str(tmp_path / "train-001.tar")]
    rows = tokenize([pattern], root / "tok", tmp_path / "out")
    assert {uid: row["mfcc"] for uid, row in rows.items()} == reference
    assert rows["utt4"]["path"] == f"{tmp_path / 'train-001.tar'}#utt4.flac"


def test_a_bad_member_is_recorded_and_the_rest_tokenized(clips, reference, tmp_path):
    root, files = clips
    dataset = hf_dataset(files)
    table = dataset.data.table
    audio = table.column("audio").to_pylist()
    audio[2] = {"bytes": b"not audio at all", "path": "utt2.flac"}
    broken = table.set_column(table.schema.get_field_index("audio"), "audio", pa.array(audio, type=table.schema.field("audio").type))
    pq.write_table(broken, tmp_path / "broken.parquet")
    result = CliRunner().invoke(app, ["tokenize", str(tmp_path / "broken.parquet"), "-t", str(root / "tok"),
                                      "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 1, result.output
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["utt2"] and "unreadable" in errors[0]["reason"]
    assert errors[0]["path"].endswith("broken.parquet#2")
    rows = {r["id"]: r["mfcc"] for r in pq.read_table(tmp_path / "out" / "data").to_pylist()}
    assert rows == {uid: codes for uid, codes in reference.items() if uid != "utt2"}


def test_brace_patterns():
    assert expand_braces("a-{8..11}.tar") == ["a-8.tar", "a-9.tar", "a-10.tar", "a-11.tar"]
    assert expand_braces("s{0..1}-{x,y}") == ["s0-x", "s0-y", "s1-x", "s1-y"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_lhotse_cuts_and_recordings_with_supervisions(clips, tmp_path, monkeypatch):
    # Manifests written by Lhotse; each segment's codes equal those of the audio Lhotse itself loads.
    lhotse = pytest.importorskip("lhotse")
    from speechtok import load

    root, files = clips
    monkeypatch.chdir(tmp_path)  # Lhotse keeps relative paths relative to the working directory
    recordings = lhotse.RecordingSet.from_recordings(lhotse.Recording.from_file(p) for p in files.values())
    supervisions = lhotse.SupervisionSet.from_segments(
        lhotse.SupervisionSegment(id=f"{r.id}-seg", recording_id=r.id, start=0.1, duration=round(r.duration - 0.3, 3))
        for r in recordings)
    recordings.to_file(tmp_path / "recordings.jsonl.gz")
    supervisions.to_file(tmp_path / "supervisions.jsonl.gz")
    cuts = lhotse.CutSet.from_manifests(recordings=recordings, supervisions=supervisions).trim_to_supervisions()
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    tok = load(root / "tok")
    expected = {c.id: tok.encode(c.load_audio()[0], c.sampling_rate).codes[:, 0].tolist() for c in cuts}
    from_cuts = tokenize([tmp_path / "cuts.jsonl.gz"], root / "tok", tmp_path / "cuts")
    assert {uid: row["mfcc"] for uid, row in from_cuts.items()} == expected
    assert from_cuts["utt2-seg"]["start"] == pytest.approx(0.1)
    paired = tokenize([tmp_path / "recordings.jsonl.gz", tmp_path / "supervisions.jsonl.gz"], root / "tok",
                      tmp_path / "paired")
    assert {uid: row["mfcc"] for uid, row in paired.items()} == expected
    whole = collect([tmp_path / "recordings.jsonl.gz"])  # recordings alone: whole files
    assert [u.id for u in whole] == list(files) and all(u.start is None for u in whole)
    result = CliRunner().invoke(app, ["tokenize", str(tmp_path / "supervisions.jsonl.gz"), "-t", str(root / "tok"),
                                      "-o", str(tmp_path / "alone")])
    assert result.exit_code == 2 and "RecordingSet" in result.output


def test_repeated_audio_paths_fall_back_to_row_ids(clips, tmp_path):
    from datasets import Audio, Dataset

    _, files = clips
    paths = [p for p in files.values()][:3]
    Dataset.from_dict({"audio": [{"bytes": p.read_bytes(), "path": "same.flac"} for p in paths]}) \
        .cast_column("audio", Audio(decode=False)).to_parquet(tmp_path / "dup.parquet")
    assert [u.id for u in collect([tmp_path / "dup.parquet"])] == [f"dup/{row:08d}" for row in range(3)]


def test_containers_in_an_object_store(s3_server, clips, reference, tmp_path, monkeypatch):
    # Parquet files of a dataset and WebDataset shards under an s3:// prefix: copied into the cache
    # once, then read like local ones (hf://datasets/<org>/<name> takes the same path)
    import fsspec
    import webdataset as wds

    root, files = clips
    monkeypatch.setenv("SPEECHTOK_CACHE", str(tmp_path / "cache"))
    names = list(files)
    hf_dataset({u: files[u] for u in names[:3]}).to_parquet(tmp_path / "train-00000.parquet")
    with wds.TarWriter(str(tmp_path / "train-00001.tar")) as sink:
        for uid in names[3:]:
            sink.write({"__key__": uid, "flac": files[uid].read_bytes()})
    fs = fsspec.filesystem("s3")
    fs.mkdir("datasets")
    for name in ("train-00000.parquet", "train-00001.tar"):
        fs.put_file(str(tmp_path / name), f"datasets/speech/{name}")
    for source in ("s3://datasets/speech", "s3://datasets/speech/train-*"):
        rows = tokenize([source], root / "tok", tmp_path / f"out-{len(source)}")
        assert {uid: row["mfcc"] for uid, row in rows.items()} == reference, source
    # rows name the objects, not the cache: a run with another cache is the same job
    assert rows["utt1"]["path"] == "s3://datasets/speech/train-00000.parquet#1"
    assert rows["utt4"]["path"] == "s3://datasets/speech/train-00001.tar#utt4.flac"
    monkeypatch.setenv("SPEECHTOK_CACHE", str(tmp_path / "other-cache"))
    assert tokenize(["s3://datasets/speech/train-*"], root / "tok", tmp_path / f"out-{len(source)}") == rows
    assert sorted(p.name for p in (tmp_path / "cache" / "remote").rglob("train-*")) == ["train-00000.parquet",
                                                                                        "train-00001.tar"]
