"""Row 7: `tgo sweep` throughput with 1 and 2 worker processes, and where the time goes (a dask
performance report saved to benchmarks/results/sweep-performance-report.html)."""

from __future__ import annotations

import contextlib
import importlib.util
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, SIZES

MODEL = "vit_tiny_patch16_224"


def run(size: str = "small", device: str = "cpu") -> dict[str, Any]:
    import torch
    from distributed import Client, LocalCluster, performance_report

    from tgo_app.sweep import SweepConfig, run_sweep
    from tgo_store.capture.models import build_model
    from tgo_store.options import IngestOptions

    cfg = SIZES[size]
    kwargs = {**cfg["vit"], "in_chans": 1, "num_classes": 10}
    out: dict[str, Any] = {}
    has_bokeh = importlib.util.find_spec("bokeh") is not None  # the report needs it: pip install 'tgo[bench]'
    if not has_bokeh:
        out["performance_report"] = "skipped: bokeh is not installed (pip install 'tgo[bench]')"
    with tempfile.TemporaryDirectory() as tmp:
        for step in (0, 1, 2):
            torch.manual_seed(step)
            torch.save(build_model(MODEL, **kwargs).state_dict(), Path(tmp) / f"step_{step}.pth")
        for workers in (1, 2):
            options = IngestOptions(model_spec=MODEL, model_kwargs=kwargs, checkpoints=f"{tmp}/step_*.pth",
                                    data_spec=f"synthetic:{cfg['images']}", batch_size=64, samples_per_block=128)
            sweep = SweepConfig(ingest=options, store=f"{tmp}/w{workers}.zarr")
            with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster, \
                    Client(cluster) as client:
                report = RESULTS / "sweep-performance-report.html" if workers == 2 else Path(tmp) / "r.html"
                with performance_report(filename=str(report)) if has_bokeh else contextlib.nullcontext():
                    summary = run_sweep(sweep, client, progress=False)
            images = 3 * cfg["images"]
            out[f"workers_{workers}_img_s"] = images / summary.seconds
    out["speedup_2_over_1"] = out["workers_2_img_s"] / out["workers_1_img_s"]
    return out
