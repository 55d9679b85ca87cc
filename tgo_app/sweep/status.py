"""What a sweep shows and records: its live per-checkpoint table and its status record.

The status record (running, waiting for a worker resource, failed blocks) is what `tgo sweep
--status` reads back, from any machine that reaches the store.
"""

from __future__ import annotations

import time
from typing import Any

from tgo_app.sweep.config import SweepConfig
from tgo_store.store.record_keys import SWEEP_STATUS as STATUS_KEY
from tgo_store.store.records import RecordStore


def write_status(store: str, status: dict) -> None:
    """What the client last knew: running, waiting for a resource, failed blocks."""
    RecordStore(store).put(STATUS_KEY, {**status, "at": time.time()})


def read_status(store: str) -> dict:
    return RecordStore(store).get(STATUS_KEY, {})


def sweep_status(cfg: SweepConfig) -> tuple[list[tuple[str, ...]], list[str]]:
    """Per checkpoint: step, blocks committed / total, state, path; and notes on the last run."""
    from tgo_store.store.info import store_info

    info = store_info(cfg.store)
    status = read_status(cfg.store)
    unfinished = "running" if status.get("running") else "incomplete"
    if status.get("waiting_for"):
        unfinished = f"waiting for a worker with {status['waiting_for']}"
    rows = [(str(c["step"]), f"{c['blocks_done']}/{info.blocks_per_checkpoint}",
             "done" if c["blocks_done"] == info.blocks_per_checkpoint else unfinished, c["path"])
            for c in info.checkpoints]
    notes = [f"failed: {f}" for f in status.get("failures", [])]
    return rows, notes


class SweepTable:
    """Per-checkpoint progress: blocks done / total and img/s (rich live table)."""

    def __init__(self, plan: Any, remaining: dict[int, int], enabled: bool):
        self.plan = plan
        self.total = dict(remaining)
        self.per_checkpoint: dict[int, dict] = {p: {"blocks": 0, "samples": 0, "seconds": 0.0} for p in remaining}
        self.started = time.perf_counter()
        self._live: Any = None
        if enabled and any(remaining.values()):
            from rich.live import Live

            from tgo_store.progress import stderr_console

            self._live = Live(self._render(), refresh_per_second=4, console=stderr_console())
            self._live.__enter__()

    def _render(self) -> Any:
        from rich.table import Table

        table = Table("step", "blocks", "img/s", title="tgo sweep")
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        for p, stats in self.per_checkpoint.items():
            table.add_row(str(self.plan.checkpoints[p].step), f"{stats['blocks']}/{self.total[p]}",
                          f"{stats['samples'] / elapsed:.1f}")
        return table

    def block_done(self, result: dict) -> None:
        stats = self.per_checkpoint[result["position"]]
        stats["blocks"] += 1
        stats["samples"] += result["samples"]
        stats["seconds"] += result["seconds"]
        if self._live is not None:
            self._live.update(self._render())

    def close(self) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
