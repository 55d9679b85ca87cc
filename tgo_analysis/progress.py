"""A progress bar over (checkpoint, layer) units of an analysis (rich, on stderr)."""

from __future__ import annotations

import sys
from typing import Any


class UnitProgress:
    def __init__(self, total: int, reused: int, enabled: bool = True):
        self.total, self.reused, self.enabled = total, reused, enabled and total > 0
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> UnitProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(TextColumn("analyze (checkpoint, layer)"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TimeRemainingColumn(), console=Console(file=sys.stderr))
            self._progress.__enter__()
            self._task = self._progress.add_task("", total=self.total)
        return self

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
