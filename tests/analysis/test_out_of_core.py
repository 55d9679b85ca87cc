"""Out of core: peak memory does not grow with the number of samples, and a store several
times larger than the memory the analysis used gives the in-memory numbers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

from tests.support import run_memory_probe

LIMIT_MB = 512
PROBE = textwrap.dedent("""
    import json, resource, sys
    limit = int(sys.argv[2]) * 2**20
    if limit:  # every private writable mapping counts (heap, mmap'd buffers, thread stacks)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    import numpy as np, xarray as xr
    import tgo_analysis
    res = tgo_analysis.analyze(xr.open_zarr(sys.argv[1]), "alpha,effective_rank,token_correlation",
                               fit_range=(2, 40), progress=False)
    # VmHWM, not getrusage: Linux carries ru_maxrss over from the parent (pytest) across fork + exec
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(json.dumps({"peak_mb": int(hwm.split()[1]) / 1024,
                      "effective_rank": res.effective_rank.values.tolist()}))
""")


def write_store(path, n: int) -> int:
    import dask.array as da

    data = da.random.default_rng(0).standard_normal((1, 3, n, 8, 64), chunks=(1, 1, 2000, 8, 64), dtype=np.float32)
    data = data * da.from_array(np.linspace(1, 3, 64).astype("float32"))
    ds = xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), data)})
    ds.to_zarr(str(path), mode="w", zarr_format=3)
    return int(data.nbytes)


def run_probe(path, limit_mb: int = 0) -> dict:
    return run_memory_probe(PROBE, path, limit_mb)


@pytest.mark.slow
def test_peak_memory_is_flat_in_n_and_a_store_3x_the_memory_limit_completes(tmp_path) -> None:
    small_bytes = write_store(tmp_path / "small.zarr", 16_000)
    big_bytes = write_store(tmp_path / "big.zarr", 300_000)
    assert big_bytes > 3 * LIMIT_MB * 2**20
    small = run_probe(tmp_path / "small.zarr")
    big = run_probe(tmp_path / "big.zarr", limit_mb=LIMIT_MB)  # 1.8 GB of data under a 512 MB limit
    assert big["peak_mb"] < LIMIT_MB
    assert big["peak_mb"] - small["peak_mb"] < 0.05 * (big_bytes - small_bytes) / 1e6, (small, big)
    act = xr.open_zarr(tmp_path / "big.zarr").activations
    for layer, token in ((0, 0), (2, 5)):
        x = act.isel(checkpoint=0, layer=layer, token=token).values.astype(np.float64)
        lam = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False)), 0, None)
        p = lam[lam > lam.max() * 64 * np.finfo(float).eps]
        p = p / p.sum()
        np.testing.assert_allclose(big["effective_rank"][0][layer][token], np.exp(-(p * np.log(p)).sum()), rtol=1e-6)


def test_the_memory_limit_is_real(tmp_path) -> None:
    """The same probe under a limit too small for the interpreter and its libraries fails: the
    limit in the test above binds."""
    write_store(tmp_path / "tiny.zarr", 2_000)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "tiny.zarr"), "100"], capture_output=True,
                          text=True, env=env)
    assert done.returncode != 0 and "MemoryError" in done.stderr
