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
    every = json.loads(out.with_suffix(".json").read_text())
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


def test_the_page_plays_and_draws_in_a_browser(evaluations, tmp_path):
    import matplotlib.image

    out = tmp_path / "report.html"
    assert CliRunner().invoke(app, ["report", *map(str, evaluations), "-o", str(out)]).exit_code == 0
    dom = chromium("--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    line = re.search(r'<p id="media"([^>]*)>', dom.stdout)
    assert line, "the page's media check did not run"
    counts = dict(re.findall(r'data-(\w+)="(\d+)"', line.group(1)))
    # 2 tokenizers x 3 utterances x (original, resynthesised); the scatter plot and a spectrogram per clip
    assert counts == {"playable": "12", "audio": "12", "decoded": "13", "images": "13"}, counts

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    done = chromium("--window-size=1200,1400", f"--screenshot={shot}", out.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)[..., :3]
    drawn = np.any(pixels < 0.9, axis=-1)  # not (near) white
    assert drawn.mean() > 0.1  # tables, plots and spectrograms, not a blank page
    assert len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 500  # plots, not just text
