"""kill -9 during a CKA and updates analysis, then resume: the results equal an uninterrupted run."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import xarray as xr

import tgo_analysis
from tests.reliability import killer

METRICS = "cka_layers,cka_checkpoints,update_norm,update_pca_energy,mean_norm"
KWARGS = {"representations": "mean,token:0,all", "tangent_rank": 2, "cka_reference": 0}


def write_store(path) -> str:
    x = np.random.default_rng(0).standard_normal((3, 2, 40, 3, 8)).astype(np.float32)
    x[1:] += 0.5 * x[:-1]
    ds = xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), x)},
                    coords={"checkpoint": [0, 10, 20]})
    ds.chunk({"checkpoint": 1, "layer": 1, "sample": 20}).to_zarr(str(path), zarr_format=3, mode="w")
    return str(path)


def results(path) -> dict[str, np.ndarray]:
    ds = xr.open_zarr(path)
    return {name: ds[name].values for name in ds.data_vars}


@pytest.mark.slow
def test_kill_minus_9_anywhere_then_resume_gives_identical_results(tmp_path) -> None:
    store = write_store(tmp_path / "s.zarr")
    reference = tmp_path / "reference.zarr"
    writes = killer.count_writes(lambda: tgo_analysis.analyze(xr.open_zarr(store), METRICS, out=str(reference),
                                                              progress=False, **KWARGS))
    expected = results(reference)
    ctx = multiprocessing.get_context("forkserver")  # a clean single-threaded parent for every child
    ctx.set_forkserver_preload(["tests.reliability.killer", "tgo_analysis.analyze"])
    for k in sorted({2, writes // 2, writes - 2}):  # creation, mid-way, the last done record
        out = tmp_path / f"killed{k}.zarr"
        child = ctx.Process(target=killer.analyze_into_and_die, args=(k, store, str(out), METRICS, KWARGS))
        child.start()
        child.join(120)
        assert child.exitcode == -9, f"write {k} of {writes}: the child should have been killed"
        resumed = tgo_analysis.analyze(xr.open_zarr(store), METRICS, out=str(out), progress=False, **KWARGS)
        got = results(out)
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            np.testing.assert_array_equal(got[name], value, err_msg=f"kill after write {k}: {name}")
        summary = resumed.attrs["analysis_summary"]
        assert summary["multi_slab_units_computed"] + summary["multi_slab_units_reused"] == 3 + 6  # 3 checkpoints x every layer; 6 (checkpoint, layer) with their partners
