"""The memory budget binds: several passes over token groups when the accumulators do not fit,
the same numbers, a refusal up front when one token cannot fit, and peak memory within the
budget (and flat in N) for a ViT-B/8-shaped layer under a process memory limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

from tgo_analysis import analyze
from tgo_store.errors import TgoError

FIT = (2, 20)
PROBE = textwrap.dedent("""
    import json, resource, sys
    limit = int(sys.argv[2]) * 2**20
    if limit:  # every private writable mapping counts (heap, mmap'd buffers, thread stacks)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    import xarray as xr
    import tgo_analysis
    res = tgo_analysis.analyze(xr.open_zarr(sys.argv[1]), "eigenvalues,alpha", fit_range=(2, 40), progress=False,
                               memory_budget=sys.argv[3])
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(json.dumps({"peak_mb": int(hwm.split()[1]) / 1024, "passes": int(res.attrs["token_passes"]),
                      "eig": res.eigenvalues.values[0, 0, [0, -1], :3].tolist()}))
""")


def write_store(path, n: int, t: int, d: int, chunk: int = 32) -> int:
    import dask.array as da

    data = da.random.RandomState(0).standard_normal((1, 1, n, t, d), chunks=(1, 1, chunk, t, d)).astype("float16")
    xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), data)}).to_zarr(
        str(path), mode="w", zarr_format=3)
    return int(data.nbytes)


def run_probe(path, limit_mb: int, budget: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", PROBE, str(path), str(limit_mb), budget], capture_output=True,
                          text=True, env=env)


def test_a_tiny_budget_makes_several_passes_and_gives_the_same_numbers(plain_store) -> None:
    url, data = plain_store
    metrics = "eigenvalues,alpha,effective_rank,cosine_anisotropy,mean_norm,token_correlation,all_tokens"
    whole = analyze(xr.open_zarr(url), metrics, fit_range=FIT, progress=False)
    tiny = analyze(xr.open_zarr(url), metrics, fit_range=FIT, progress=False, memory_budget="1MB")
    assert whole.attrs["token_passes"] == 1 and tiny.attrs["token_passes"] >= 3
    for name in ("eigenvalues", "alpha", "effective_rank", "cosine_anisotropy", "mean_norm", "token_correlation"):
        np.testing.assert_allclose(tiny[name].values, whole[name].values, rtol=1e-12, atol=1e-13, equal_nan=True,
                                   err_msg=name)
    top = float(np.nanmax(whole.eigenvalues_all.values))  # the Gram's order of sums changes: 1e-12 of the top
    np.testing.assert_allclose(tiny.eigenvalues_all.values, whole.eigenvalues_all.values, rtol=1e-12, atol=1e-12 * top,
                               equal_nan=True)
    norms = np.linalg.norm(data.astype(np.float64), axis=-1).mean(axis=2)  # (checkpoint, layer, token)
    np.testing.assert_allclose(whole.mean_norm.values, norms, rtol=1e-12)


def test_a_budget_below_one_token_is_refused_before_anything_is_written(plain_store, tmp_path) -> None:
    url, _ = plain_store
    out = tmp_path / "never.zarr"
    with pytest.raises(TgoError, match="cannot hold one token's accumulators"):
        analyze(xr.open_zarr(url), "alpha", fit_range=FIT, progress=False, memory_budget="2KB", out=str(out))
    assert not out.exists()


@pytest.mark.slow
def test_vit_b_layer_within_a_memory_limit_that_one_pass_would_break(tmp_path) -> None:
    """785 tokens x 768 features: one pass needs 3.7 GB of float64 co-moments; under a 2.5 GB
    process limit a 1.2 GB budget completes in passes over token groups, one pass cannot."""
    write_store(tmp_path / "vitb.zarr", 64, 785, 768)
    limit = 2560
    bounded = run_probe(tmp_path / "vitb.zarr", limit, "1.2GB")
    assert bounded.returncode == 0, bounded.stderr[-2000:]
    got = json.loads(bounded.stdout.strip().splitlines()[-1])
    assert got["passes"] >= 3 and got["peak_mb"] < 1200 + 1024, got
    unbounded = run_probe(tmp_path / "vitb.zarr", limit, "64GB")  # one pass: the limit binds
    assert unbounded.returncode != 0 and "MemoryError" in unbounded.stderr
    x = xr.open_zarr(tmp_path / "vitb.zarr").activations[0, 0, :, -1].values.astype(np.float64)
    ref = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1], 0, None)
    np.testing.assert_allclose(got["eig"][1], ref[:3], rtol=1e-9)


@pytest.mark.slow
def test_peak_memory_is_flat_in_n_under_a_budget(tmp_path) -> None:
    """The same (narrower) layer shape at N = 4k and 8k: peak memory grows by far less than the data.

    Below about 4k samples (32 chunks) the peak still rises as the graph's read-ahead and the
    allocator reach their steady state (measured 2026-12-07: 1k 276-290 MB, 2k 286-292, 4k 299-301,
    8k 300-309), so the two sizes compared are both past it: doubling N there adds 113 MB of data."""
    small = write_store(tmp_path / "n4k.zarr", 4096, 48, 384, chunk=128)
    big = write_store(tmp_path / "n8k.zarr", 8192, 48, 384, chunk=128)
    peaks = []
    for name in ("n4k.zarr", "n8k.zarr"):
        done = run_probe(tmp_path / name, 0, "400MB")
        assert done.returncode == 0, done.stderr[-2000:]
        peaks.append(json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"])
    # the threaded scheduler may hold one more sample chunk in flight at one size than at the other,
    # depending on timing (its float64 copy: 128 x 48 x 384 x 8 bytes = 18 MB; seen under a loaded
    # suite: +8.4 MB): that much is allowed on top, far below the 113 MB (float16) of added data
    in_flight = 128 * 48 * 384 * 8 / 2**20
    assert peaks[1] - peaks[0] < 0.05 * (big - small) / 2**20 + in_flight, peaks
