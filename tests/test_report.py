"""`speechtok report` as a person sees it: the page opened in a real headless browser (Debian's
chromium), every audio clip playable and every plot drawn, a screenshot kept in test-artifacts/."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from speechtok.cli import app

ARTIFACTS = Path(os.environ.get("SPEECHTOK_TEST_ARTIFACTS", Path(__file__).parents[1] / "test-artifacts"))


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory, speech_files):
    """`eval resynth` of 3 utterances with two tiny random codecs (DAC 16 kHz, EnCodec 24 kHz)."""
    from .test_codecs import _tiny

    root = tmp_path_factory.mktemp("report")
    dirs = []
    for family in ("dac", "encodec"):
        _tiny(family).eval().save_pretrained(root / family)
        out = root / f"eval-{family}"
        run = CliRunner().invoke(app, ["eval", "resynth", *map(str, speech_files[:4]), "-t", str(root / family), "-n", "3",
                                       "-o", str(out), "-q"])
        assert run.exit_code == 0, run.output
        dirs.append(out)
    return dirs


def chromium(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=10000", *args], capture_output=True, text=True, timeout=120)


def test_report_numbers_are_the_evaluations(evaluations, tmp_path):
    out = tmp_path / "report.html"
    run = CliRunner().invoke(app, ["report", *map(str, evaluations), "-o", str(out)])
    assert run.exit_code == 0, run.output
    page = out.read_text()
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # nothing fetched
    every = json.loads(out.with_suffix(".json").read_text())["resynthesis"]
    assert [e["directory"] for e in every] == list(map(str, evaluations))
    with open(out.with_suffix(".csv")) as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6
    for e, directory in zip(every, evaluations):
        rows = [json.loads(line) for line in (directory / "utterances.jsonl").read_text().splitlines()]
        assert e["utterances"] == rows
        mine = [r for r in table if r["tokenizer"] == e["name"]]
        assert [float(r["pesq"]) for r in mine] == pytest.approx([r["pesq"] for r in rows])
        assert f"{e['metrics']['pesq']['mean']:.4g}" in page  # the summary table shows the means
    bad = CliRunner().invoke(app, ["report", str(tmp_path), "-o", str(tmp_path / "x.html")])
    assert bad.exit_code == 2 and "eval resynth" in bad.output


@pytest.fixture(scope="module")
def units_and_abx(tmp_path_factory, phone_speech):
    """A tokenized corpus of generated speech (MFCC, K=16) and an `eval abx`-style result."""
    root = tmp_path_factory.mktemp("units")
    runner = CliRunner()
    assert runner.invoke(app, ["fit-kmeans", str(phone_speech / "audio"), "-e", "mfcc", "-k", "16", "-o",
                               str(root / "tok"), "-q"]).exit_code == 0
    assert runner.invoke(app, ["tokenize", str(phone_speech / "audio"), "-t", str(root / "tok"), "-o",
                               str(root / "units"), "-q"]).exit_code == 0
    (root / "abx").mkdir()
    (root / "abx" / "abx.json").write_text(json.dumps({"representation": "features", "stream": "mfcc",
                                                       "within_speaker": 0.05, "across_speaker": 0.14, "items": 405}))
    return root


def test_units_in_the_report_are_the_corpus_statistics(units_and_abx, phone_speech, tmp_path):
    from speechtok.corpus.evaluate import purity, stats

    out = tmp_path / "report.html"
    run = CliRunner().invoke(app, ["report", str(units_and_abx / "units"), str(units_and_abx / "abx"), "-a",
                                   str(phone_speech / "phones.tsv"), "-o", str(out)])
    assert run.exit_code == 0, run.output
    numbers = json.loads(out.with_suffix(".json").read_text())
    stream = numbers["units"][0]["streams"][0]
    expected = stats(units_and_abx / "units")[0]
    assert sum(stream["counts"]) == expected.tokens and stream["used"] == expected.used == sum(c > 0 for c in stream["counts"])
    assert stream["teacher_quality"]["pnmi"] == pytest.approx(purity(units_and_abx / "units", phone_speech / "phones.tsv").pnmi)
    assert numbers["abx"][0]["across_speaker"] == 0.14
    page = out.read_text()
    assert "p(phone | unit)" in page and "14.00%" in page and f"{stream['teacher_quality']['pnmi']:.4f}" in page


def test_the_page_plays_and_draws_in_a_browser(evaluations, units_and_abx, phone_speech, tmp_path):
    import matplotlib.image

    out = tmp_path / "report.html"
    assert CliRunner().invoke(app, ["report", *map(str, evaluations), str(units_and_abx / "units"),
                                    str(units_and_abx / "abx"), "-a", str(phone_speech / "phones.tsv"),
                                    "-o", str(out)]).exit_code == 0
    dom = chromium("--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    line = re.search(r'<p id="media"([^>]*)>', dom.stdout)
    assert line, "the page's media check did not run"
    counts = dict(re.findall(r'data-(\w+)="(\d+)"', line.group(1)))
    # 2 tokenizers x 3 utterances x (original, resynthesised); the scatter plot, a spectrogram per clip,
    # the ABX bars, codebook usage, PNMI by K and one heatmap
    # (each decoded by the browser and not blank: the page's script reads their pixels)
    assert counts == {"playable": "12", "audio": "12", "decoded": "17", "drawn": "17", "images": "17"}, counts

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    done = chromium("--window-size=1200,1600", f"--screenshot={shot}", out.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert np.any(pixels < 0.9, axis=-1).mean() > 0.03  # what the browser painted: tables and plots, not a blank page
