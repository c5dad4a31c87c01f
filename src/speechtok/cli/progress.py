"""What a long job shows while it runs (a rich bar) and when it ends (a summary)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text


class _AudioColumn(ProgressColumn):
    """Hours of audio done this run, and hours of audio per second of wall time (x 3600 = realtime factor)."""

    def __init__(self, meter: JobProgress):
        super().__init__()
        self.meter = meter

    def render(self, task) -> Text:
        hours = self.meter.samples / self.meter.sample_rate / 3600
        elapsed = max(time.perf_counter() - self.meter.started, 1e-9)
        return Text(f"{hours:.3f} h audio, {hours / elapsed:.4f} h/s")


class JobProgress:
    """`with JobProgress(console, sample_rate, "tokenize") as p: job.run(on_start=p.start, on_progress=p.advance)`."""

    def __init__(self, console: Console, sample_rate: int, label: str, quiet: bool = False):
        self.sample_rate = sample_rate
        self.samples = 0
        self.started = time.perf_counter()
        self.bar = Progress(
            TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
            _AudioColumn(self), TimeRemainingColumn(), console=console, disable=quiet,
        )
        self.task = None

    def __enter__(self) -> JobProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def start(self, total_files: int, done_files: int) -> None:
        self.started = time.perf_counter()
        self.task = self.bar.add_task("job", total=total_files, completed=done_files)

    def advance(self, files: int, samples: int) -> None:
        self.samples += samples
        if self.task is not None:
            self.bar.advance(self.task, files)


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"  # pragma: no cover
