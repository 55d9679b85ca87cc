"""Ingest progress: samples/s, MB/s written and ETA per checkpoint (rich)."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np


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
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]step {task.fields[step]:>8}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("samples"), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
            console=Console(file=sys.stderr), transient=False,
        )
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
