"""Out of core: CKA and updates over a store larger than the memory limit (6 x the budget), with a flat peak RSS."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import xarray as xr

from tests.similarity.test_cka import reference_cka
from tests.support import run_memory_probe

LIMIT_MB = 640  # RLIMIT_DATA counts virtual private memory: thread arenas and stacks too
PROBE = textwrap.dedent("""
    import json, resource, sys
    limit = int(sys.argv[2]) * 2**20
    if limit:  # every private writable mapping counts (heap, mmap'd buffers, thread stacks)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    import xarray as xr
    import tgo_analysis
    res = tgo_analysis.analyze(xr.open_zarr(sys.argv[1]), "cka_layers,cka_checkpoints,updates", progress=False,
                               representations="mean,token:0", tangent_rank=4, tangent_subsample=1024,
                               memory_budget="128MB")
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(json.dumps({"peak_mb": int(hwm.split()[1]) / 1024, "cka_layers": res.cka_layers.values.tolist(),
                      "cka_checkpoints": res.cka_checkpoints.values.tolist()}))
""")


def write_store(path, n: int) -> int:
    import dask.array as da

    rng = da.random.default_rng(0)
    data = rng.standard_normal((2, 3, n, 8, 64), chunks=(1, 1, 2000, 8, 64), dtype=np.float32)
    data = data + 0.8 * da.roll(data, 1, axis=1)  # neighbouring layers share signal
    ds = xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), data)},
                    coords={"checkpoint": [0, 1]})
    ds.to_zarr(str(path), mode="w", zarr_format=3)
    return int(data.nbytes)


@pytest.mark.slow
def test_cka_over_a_store_larger_than_the_memory_limit_has_a_flat_peak_and_exact_values(tmp_path) -> None:
    small_bytes = write_store(tmp_path / "small.zarr", 8_000)
    big_bytes = write_store(tmp_path / "big.zarr", 64_000)
    assert big_bytes > 1.15 * LIMIT_MB * 2**20
    small = run_memory_probe(PROBE, tmp_path / "small.zarr")
    big = run_memory_probe(PROBE, tmp_path / "big.zarr", LIMIT_MB)  # 790 MB under a 640 MB limit
    assert big["peak_mb"] < LIMIT_MB
    assert big["peak_mb"] - small["peak_mb"] < 0.05 * (big_bytes - small_bytes) / 1e6, (small["peak_mb"], big["peak_mb"])
    act = xr.open_zarr(tmp_path / "big.zarr").activations
    means = {(c, layer): act.isel(checkpoint=c, layer=layer).astype("float64").mean("token").values
             for c in (0, 1) for layer in (0, 2)}
    assert abs(big["cka_layers"][1][0][2][0] - reference_cka(means[1, 0], means[1, 2])) < 1e-9
    assert abs(big["cka_checkpoints"][0][2][0] - reference_cka(means[0, 2], means[1, 2])) < 1e-9
