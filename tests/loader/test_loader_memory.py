"""The mixing buffer bounds memory: an epoch over a layer several times the memory budget
completes under a limit that binds (the same epoch with a buffer as large as the layer fails)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import xarray as xr

from tests.support import run_memory_probe

N, T, D = 32768, 16, 256  # one float16 layer of 256 MiB, pieces of 1024 samples (8 MiB)
BUDGET_MB = 128  # beyond what the interpreter, torch and zarr hold after import (thread stacks count too)
BUFFER = "8MiB"
PROBE = textwrap.dedent("""
    import json, resource, sys
    import numpy as np, torch, xarray, zarr
    from tgo_store import ActivationLoader
    def status(key):
        return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) * 1024
    base_rss, budget = status("VmRSS"), int(sys.argv[2]) * 2**20
    if budget:  # every private writable mapping counts (heap, mmap'd buffers, thread stacks)
        limit = status("VmData") + budget
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    loader = ActivationLoader(sys.argv[1], layer=0, batch_size=2048, buffer_size=BUFFER, threads=2)
    n, total = 0, 0.0
    for batch in loader:
        n += len(batch["sample"])
        total += float(batch["activations"][:, 0].double().sum())
    print(json.dumps({"positions": n, "sum": total, "window": loader.window,
                      "peak_mb": (status("VmHWM") - base_rss) / 2**20}))
""")


def write_layer(path: str) -> float:
    import dask.array as da

    data = da.random.RandomState(0).standard_normal((1, 1, N, T, D), chunks=(1, 1, 1024, T, D)).astype("float16")
    xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), data)}).to_zarr(
        path, mode="w", zarr_format=3, encoding={"activations": {"compressors": None}})
    return float(data[0, 0, :, :, 0].astype("float64").sum().compute())


def probe(buffer: str, path: str, budget_mb: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", PROBE.replace("BUFFER", repr(buffer)), path, str(budget_mb)],
                          capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_an_epoch_over_a_layer_larger_than_the_budget_stays_inside_it(tmp_path) -> None:
    path = str(tmp_path / "layer.zarr")
    reference = write_layer(path)
    layer_mb = N * T * D * 2 / 2**20
    assert layer_mb >= BUDGET_MB * 2
    bounded = run_memory_probe(PROBE.replace("BUFFER", repr(BUFFER)), path, BUDGET_MB)
    assert bounded["positions"] == N * T
    assert bounded["sum"] == pytest.approx(reference, rel=1e-9, abs=1e-6)  # every value, once
    assert bounded["peak_mb"] < BUDGET_MB
    whole = probe(f"{int(layer_mb) + 8}MiB", path, BUDGET_MB)  # a buffer holding the layer: the limit binds
    assert whole.returncode != 0 and "MemoryError" in whole.stderr, whole.stderr[-500:]
