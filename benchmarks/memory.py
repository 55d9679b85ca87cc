"""Row "memory" (issue 14): per-token spectra of ViT-S/8 and ViT-B/8 layer shapes (785 tokens x
384 / 768 features, float16) at N = 1k and 4k (16k at `large`) under a memory budget: peak RSS
against the budget, passes over token groups (read amplification), time against numpy in
memory (timed on a few tokens, scaled to all 785) and against the GEMM + eigvalsh roofline."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.analysis import SPECTRA
from benchmarks.common import run_child, write_store
from benchmarks.machine import gemm_gflops

SHAPES = {"vit_s8": (785, 384), "vit_b8": (785, 768)}
SAMPLES = {"tiny": (256,), "small": (1024, 4096), "medium": (1024, 4096), "large": (1024, 4096, 16384)}
BUDGET = "2GB"  # half of a 4 GB-per-worker cluster node; a 16 GB laptop's default budget is 8 GB
NUMPY_TOKENS = 8
CHILD = """
import json, sys, time
import tgo_analysis, tgo_store
ds = tgo_store.open_store(sys.argv[1])
start = time.perf_counter()
res = tgo_analysis.analyze(ds, sys.argv[2], fit_range=(2, 40), all_tokens="off", progress=False,
                           memory_budget=sys.argv[3])
seconds = time.perf_counter() - start
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "peak_rss_mb": int(hwm.split()[1]) / 1024,
                  "passes": int(res.attrs["token_passes"])}))
"""


def numpy_seconds(store: Path, tokens: int) -> float:
    """np.cov + eigvalsh per token on data already in RAM, timed on a few tokens, scaled to all."""
    import xarray as xr

    act = xr.open_zarr(store).activations[0, 0]
    x = np.asarray(act[:, :NUMPY_TOKENS].values, dtype=np.float64)
    start = time.perf_counter()
    for token in range(NUMPY_TOKENS):
        np.linalg.eigvalsh(np.cov(x[:, token], rowvar=False))
    return (time.perf_counter() - start) / NUMPY_TOKENS * tokens


def roofline_seconds(n: int, t: int, d: int, dgemm: float) -> float:
    """Float64 co-moment GEMM FLOPs at the measured DGEMM rate, plus eigvalsh timed on 8 matrices."""
    x = np.random.default_rng(0).standard_normal((8, max(d, 64), d))
    covs = np.einsum("kni,knj->kij", x, x)
    start = time.perf_counter()
    np.linalg.eigvalsh(covs)
    eig = (time.perf_counter() - start) / 8 * t
    return 2.0 * t * n * d * d / (dgemm * 1e9) + eig


def run(size: str = "small", device: str = "cpu") -> dict[str, float]:
    dgemm = gemm_gflops(np.float64)
    out: dict[str, float] = {"budget_mb": 2000.0, "dgemm_gflops": dgemm}
    for name, (t, d) in SHAPES.items():
        for n in SAMPLES[size]:
            with tempfile.TemporaryDirectory() as tmp:
                store = write_store(Path(tmp) / "s.zarr", (1, 1, n, t, d), chunk=256, dtype="float16")
                got = run_child(CHILD, str(store), SPECTRA, BUDGET)
                key = f"{name}_n{n}"
                out[f"{key}_seconds"] = got["seconds"]
                out[f"{key}_peak_rss_mb"] = got["peak_rss_mb"]
                out[f"{key}_passes"] = got["passes"]
                out[f"{key}_accumulators_one_pass_mb"] = t * d * (d + 1) * 8 / 1e6
                out[f"{key}_numpy_seconds"] = numpy_seconds(store, t)
                out[f"{key}_roofline_seconds"] = roofline_seconds(n, t, d, dgemm)
                print(json.dumps({key: got}), flush=True)
    return out
