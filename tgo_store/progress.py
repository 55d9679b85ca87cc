"""The one progress set-up of tgo: bars on stderr for ingest, analysis, training and sweeps.

On a terminal every bar is a rich live display built by ``rich_progress`` on
``stderr_console()``, so stdout stays for results and every verb's bars look alike. When stderr
is a file or a pipe (a log, CI, ``nohup``) a live display shows nothing until it stops, so the
same bars print plain lines instead (``LineReport``): done/total, percent, rate and ETA, at
most every ``TGO_PROGRESS_SECONDS`` (default 10) seconds and at every further tenth of the
work, plus the first and the last. ``CountBar`` counts units (analysis (checkpoint, layer)
units, training steps); ``IngestProgress`` adds one bar per checkpoint with samples/s and MB/s.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np

INTERVAL_ENV = "TGO_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 10.0
LINE_STEPS = 10  # a line at every further tenth of the work, whatever the interval


def stderr_console() -> Any:
    """The rich console every progress display writes to (stderr)."""
    from rich.console import Console

    return Console(file=sys.stderr)


def live_display() -> bool:
    """Whether progress is drawn live (stderr is a terminal) or printed as plain lines."""
    return bool(stderr_console().is_terminal)


def line_interval() -> float:
    """Seconds between plain progress lines (``TGO_PROGRESS_SECONDS``; default 10)."""
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def duration(seconds: float) -> str:
    """'1:05:03', '4:07' or '12 s': the width a progress line needs."""
    if not np.isfinite(seconds):
        return "?"
    s = round(float(seconds))
    if s < 60:
        return f"{s} s"
    hours, rest = divmod(s, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class LineReport:
    """Plain progress lines for a non-terminal stderr: 'train: 120/500 (24%), 3.1 steps/s, elapsed
    39 s, ETA 2:03'. A line at the start, then whenever ``interval`` seconds have passed or another
    tenth of the total is done, and always at the end."""

    def __init__(self, label: str, total: int, unit: str, interval: float | None = None, stream: Any = None):
        self.label, self.total, self.unit = label, max(int(total), 0), unit
        self.interval = line_interval() if interval is None else interval
        self.stream = stream or sys.stderr
        self.started = self.last_time = time.perf_counter()
        self.done = 0
        self.last_tenth = 0
        self.printed_done = -1

    def line(self, extra: str = "", now: float | None = None) -> str:
        elapsed = (time.perf_counter() if now is None else now) - self.started
        rate = self.done / elapsed if elapsed > 0 else float("nan")
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        tail = f", {extra}" if extra else ""
        speed = (f"{rate:.2f} {self.unit}/s" if not rate > 0 or rate >= 0.1 else
                 f"{1 / rate:.0f} s per {self.unit.rstrip('s')}")  # slow work: '210 s per unit', not '0.00'
        return (f"{self.label}: {self.done}/{self.total}{share}, {speed}{tail}, "
                f"elapsed {duration(elapsed)}, ETA {duration(left) if self.done < self.total else '0 s'}")

    def update(self, done: int, extra: str = "") -> None:
        """Record progress; print a line when it is due."""
        self.done = min(int(done), self.total) if self.total else int(done)
        now = time.perf_counter()
        tenth = self.done * LINE_STEPS // self.total if self.total else 0
        finished = self.done >= self.total
        due = now - self.last_time >= self.interval or tenth > self.last_tenth or finished
        if due and self.done != self.printed_done:
            self.write(self.line(extra, now))
            self.last_time, self.last_tenth, self.printed_done = now, tenth, self.done

    def write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def rich_progress(*label_columns: Any, rate: bool = False) -> Any:
    """A rich Progress: the label columns, a bar, done/total, elapsed and remaining time."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    extra = (TextColumn("{task.fields[rate]}"),) if rate else (TimeElapsedColumn(),)
    return Progress(*label_columns, BarColumn(), MofNCompleteColumn(), *extra, TimeRemainingColumn(),
                    console=stderr_console())


class CountBar:
    """One bar over ``total`` units with a fixed label; a no-op when disabled or empty.

    Live on a terminal, plain ``LineReport`` lines otherwise."""

    def __init__(self, label: str, total: int, enabled: bool = True, unit: str = "units"):
        self.label, self.total, self.enabled, self.unit = label, total, enabled and total > 0, unit
        self._progress: Any = None
        self._task: Any = None
        self._lines: LineReport | None = None
        self._done = 0

    def __enter__(self) -> CountBar:
        if not self.enabled:
            return self
        if not live_display():
            self._lines = LineReport(self.label, self.total, self.unit)
            self._lines.write(f"{self.label}: {self.total} {self.unit} to do")
            return self
        from rich.progress import TextColumn

        self._progress = rich_progress(TextColumn(self.label))
        self._progress.__enter__()
        self._task = self._progress.add_task("", total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        self.set(self._done + n)

    def set(self, completed: int) -> None:
        self._done = completed
        if self._progress is not None:
            self._progress.update(self._task, completed=completed)
        elif self._lines is not None:
            self._lines.update(completed)

    def message(self, message: str) -> None:
        """Print a line above the bar (e.g. the held-out accuracy at a checkpoint)."""
        if self._progress is not None:
            self._progress.console.print(message)
        elif self._lines is not None:
            self._lines.write(message)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def progress_bar(label: str, total: int, enabled: bool = True, unit: str = "steps") -> CountBar:
    """A counting bar, e.g. ``with progress_bar("train", total=steps) as bar: bar.set(step)``."""
    return CountBar(label, total, enabled, unit)


class UnitProgress(CountBar):
    """Analysis: one bar over the work still to do: (checkpoint, layer) units and multi-slab items
    (``summary_line`` counts the same)."""

    def __init__(self, total: int, reused: int = 0, enabled: bool = True):
        super().__init__("analyze", total, enabled, unit="units")
        self.reused = reused


class IngestProgress:
    """One bar per checkpoint that still has blocks to write (one plain line report off a terminal)."""

    def __init__(self, plan: Any, todo: list[tuple[int, int]], enabled: bool = True):
        self.plan = plan
        self.enabled = enabled and bool(todo)
        self.started = time.perf_counter()
        self.bytes = 0
        self.samples = 0
        self._tasks: dict[int, Any] = {}
        self._todo = todo
        self._progress: Any = None
        self._lines: LineReport | None = None

    def _counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for position, block in self._todo:
            start, stop = self.plan.layout.block_range(block, self.plan.n_samples)
            counts[position] = counts.get(position, 0) + stop - start
        return counts

    def __enter__(self) -> IngestProgress:
        if not self.enabled:
            return self
        counts = self._counts()
        if not live_display():
            total = sum(counts.values())
            self._lines = LineReport("ingest", total, "samples")
            self._lines.write(f"ingest: {total} samples to record over {len(counts)} checkpoint(s)")
            return self
        from rich.progress import TextColumn

        self._progress = rich_progress(TextColumn("[bold]step {task.fields[step]:>8}"), TextColumn("samples"),
                                      rate=True)
        self._progress.__enter__()
        for position, total in counts.items():
            step = self.plan.checkpoints[position].step
            self._tasks[position] = self._progress.add_task("", total=total, step=step, rate="")
        return self

    def advance(self, position: int, data: np.ndarray) -> None:
        self.bytes += data.nbytes
        self.samples += data.shape[1]
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        if self._lines is not None:
            step = self.plan.checkpoints[position].step
            self._lines.update(self.samples, f"{self.bytes / elapsed / 1e6:.1f} MB/s, at step {step}")
            return
        rate = f"{self.samples / elapsed:8.1f} samples/s {self.bytes / elapsed / 1e6:7.1f} MB/s"
        self._progress.update(self._tasks[position], advance=data.shape[1], rate=rate)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
