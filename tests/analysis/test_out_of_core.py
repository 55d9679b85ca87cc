"""Out of core: peak memory does not grow with the number of samples, and a store several
times larger than the memory the analysis used gives the in-memory numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

PROBE = textwrap.dedent("""
    import json, resource, sys
    import numpy as np, xarray as xr
    import tgo_analysis
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = tgo_analysis.analyze(xr.open_zarr(sys.argv[1]), "alpha,effective_rank,token_correlation",
                               fit_range=(2, 40), progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"baseline_mb": before / 1024, "peak_mb": peak / 1024,
                      "effective_rank": res.effective_rank.values.tolist()}))
""")


def write_store(path, n: int) -> int:
    import dask.array as da

    data = da.random.RandomState(0).standard_normal((1, 3, n, 8, 64), chunks=(1, 1, 2000, 8, 64)).astype("float32")
    data = data * da.from_array(np.linspace(1, 3, 64).astype("float32"))
    ds = xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), data)})
    ds.to_zarr(str(path), mode="w", zarr_format=3)
    return int(data.nbytes)


def run_probe(path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_peak_memory_is_flat_in_n_and_numbers_match_memory(tmp_path) -> None:
    small_bytes = write_store(tmp_path / "small.zarr", 16_000)
    big_bytes = write_store(tmp_path / "big.zarr", 64_000)
    small, big = run_probe(tmp_path / "small.zarr"), run_probe(tmp_path / "big.zarr")
    used_big = big["peak_mb"] - big["baseline_mb"]
    assert big_bytes / 1e6 > 3 * used_big, f"store {big_bytes / 1e6:.0f} MB vs {used_big:.0f} MB used by the analysis"
    assert big["peak_mb"] - small["peak_mb"] < 0.1 * (big_bytes - small_bytes) / 1e6, (small, big)
    act = xr.open_zarr(tmp_path / "big.zarr").activations
    for layer, token in ((0, 0), (2, 5)):
        x = act.isel(checkpoint=0, layer=layer, token=token).values.astype(np.float64)
        lam = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False)), 0, None)
        p = lam[lam > lam.max() * 64 * np.finfo(float).eps]
        p = p / p.sum()
        np.testing.assert_allclose(big["effective_rank"][0][layer][token], np.exp(-(p * np.log(p)).sum()), rtol=1e-6)
