"""Cluster-scale sweeps: the sweep file (``config``), running it (``run``), its status (``status``)."""

from __future__ import annotations

from tgo_app.sweep.config import SweepConfig, load_config
from tgo_app.sweep.run import (
    SweepSummary,
    ingest_task,
    missing_resources,
    run_sweep,
    run_sweeps,
    stop_requested,
    sweep_on_cluster,
)
from tgo_app.sweep.status import (
    STATUS_KEY,
    SweepTable,
    read_status,
    sweep_status,
    write_status,
)

__all__ = ["STATUS_KEY", "SweepConfig", "SweepSummary", "SweepTable", "ingest_task", "load_config",
           "missing_resources", "read_status", "run_sweep", "run_sweeps", "stop_requested", "sweep_on_cluster",
           "sweep_status", "write_status"]
