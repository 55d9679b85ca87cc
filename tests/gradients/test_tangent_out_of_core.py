"""Out of core: a gradient store 3x the memory given to the process completes with a flat peak,
within the memory budget the analysis is given."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import xarray as xr

from tests.support import run_memory_probe

LIMIT_MB = 512
T, D = 8, 256
PROBE = textwrap.dedent("""
    import json, resource, sys
    limit = int(sys.argv[2]) * 2**20
    if limit:  # every private writable mapping counts (heap, mmap'd buffers, thread stacks)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    import xarray as xr
    import tgo_analysis
    res = tgo_analysis.analyze(xr.open_zarr(sys.argv[1]), "tangent", progress=False, memory_budget="192MB",
                               params={"tangent": {"rank": 4, "subsample": 2048, "control_draws": 8, "bootstrap": 50}})
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(json.dumps({"peak_mb": int(hwm.split()[1]) / 1024,
                      "tangent_energy": res.tangent_energy.values.tolist()}))
""")


def write_store(path, n: int) -> int:
    """Compressible low-rank activations (they only feed the semi-NMF subsample) and incompressible
    random float16 gradients (what the streamed reduction reads in full)."""
    import dask.array as da

    rng = np.random.default_rng(0)
    patterns = np.abs(rng.standard_normal((3, T, D))).astype(np.float16)
    codes = da.from_array(np.arange(n) % 7, chunks=2000)
    # float32 arithmetic and numpy's Generator: half the time of float64 and the legacy RandomState
    acts = sum(((codes + j) % 5).astype(np.float32)[:, None, None] * patterns[j].astype(np.float32)
               for j in range(3)).astype(np.float16)
    grads = da.random.default_rng(1).standard_normal((n, T, D), chunks=(2000, T, D), dtype=np.float32)
    grads = grads.astype(np.float16)
    dims = ("checkpoint", "layer", "sample", "token", "feature")
    ds = xr.Dataset({"activations": (dims, acts[None, None]), "gradients": (dims, grads[None, None])})
    ds.to_zarr(str(path), mode="w", zarr_format=3, encoding={"gradients": {"compressors": None}})
    return int(grads.nbytes)


def run_probe(path, limit_mb: int = 0) -> dict:
    return run_memory_probe(PROBE, path, limit_mb)


@pytest.mark.slow
def test_gradient_store_3x_the_memory_limit_completes_with_a_flat_peak(tmp_path) -> None:
    small_bytes = write_store(tmp_path / "small.zarr", 20_000)
    big_bytes = write_store(tmp_path / "big.zarr", 400_000)
    assert big_bytes > 3 * LIMIT_MB * 2**20
    small = run_probe(tmp_path / "small.zarr")
    big = run_probe(tmp_path / "big.zarr", limit_mb=LIMIT_MB)
    assert big["peak_mb"] < LIMIT_MB
    assert big["peak_mb"] - small["peak_mb"] < 0.05 * (big_bytes - small_bytes) / 1e6, (small, big)
    # isotropic gradients: any r-dim subspace captures about r/D of the energy
    assert abs(big["tangent_energy"][0][0] - 4 / D) < 0.2 * 4 / D
