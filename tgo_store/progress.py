"""The one rich progress set-up of tgo: bars on stderr for ingest, analysis, training and sweeps.

Every bar is built by ``rich_progress`` on ``stderr_console()``, so stdout stays for results
and every verb's bars look alike. ``CountBar`` counts units (analysis (checkpoint, layer)
units, training steps); ``IngestProgress`` adds one bar per checkpoint with samples/s and MB/s.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np


def stderr_console() -> Any:
    """The rich console every progress display writes to (stderr)."""
    from rich.console import Console

    return Console(file=sys.stderr)


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
    """One bar over ``total`` units with a fixed label; a no-op when disabled or empty."""

    def __init__(self, label: str, total: int, enabled: bool = True):
        self.label, self.total, self.enabled = label, total, enabled and total > 0
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> CountBar:
        if self.enabled:
            from rich.progress import TextColumn

            self._progress = rich_progress(TextColumn(self.label))
            self._progress.__enter__()
            self._task = self._progress.add_task("", total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n)

    def set(self, completed: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed)

    def message(self, message: str) -> None:
        """Print a line above the bar (e.g. the held-out accuracy at a checkpoint)."""
        if self._progress is not None:
            self._progress.console.print(message)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def progress_bar(label: str, total: int, enabled: bool = True) -> CountBar:
    """A counting bar, e.g. ``with progress_bar("train", total=steps) as bar: bar.set(step)``."""
    return CountBar(label, total, enabled)


class UnitProgress(CountBar):
    """Analysis: one bar over the (checkpoint, layer) units still to compute."""

    def __init__(self, total: int, reused: int = 0, enabled: bool = True):
        super().__init__("analyze (checkpoint, layer)", total, enabled)
        self.reused = reused


class IngestProgress:
    """One bar per checkpoint that still has blocks to write."""

    def __init__(self, plan: Any, todo: list[tuple[int, int]], enabled: bool = True):
        self.plan = plan
        self.enabled = enabled and bool(todo)
        self.started = time.perf_counter()
        self.bytes = 0
        self._tasks: dict[int, Any] = {}
        self._todo = todo
        self._progress: Any = None

    def __enter__(self) -> IngestProgress:
        if not self.enabled:
            return self
        from rich.progress import TextColumn

        self._progress = rich_progress(TextColumn("[bold]step {task.fields[step]:>8}"), TextColumn("samples"),
                                      rate=True)
        self._progress.__enter__()
        counts: dict[int, int] = {}
        for position, block in self._todo:
            start, stop = self.plan.layout.block_range(block, self.plan.n_samples)
            counts[position] = counts.get(position, 0) + stop - start
        for position, total in counts.items():
            step = self.plan.checkpoints[position].step
            self._tasks[position] = self._progress.add_task("", total=total, step=step, rate="")
        return self

    def advance(self, position: int, data: np.ndarray) -> None:
        self.bytes += data.nbytes
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        done = sum(t.completed for t in self._progress.tasks) + data.shape[1]
        rate = f"{done / elapsed:8.1f} samples/s {self.bytes / elapsed / 1e6:7.1f} MB/s"
        self._progress.update(self._tasks[position], advance=data.shape[1], rate=rate)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
