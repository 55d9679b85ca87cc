"""A unit split across Dask workers (issue 23): the planner's cuts, the same numbers as the
threaded path on a LocalCluster and on a `dask scheduler` + `dask worker` pair, a worker memory
limit that binds, a killed client that resumes and a killed worker whose task is retried."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.analysis.conftest import planted_activations
from tgo_analysis import analyze
from tgo_analysis.engine.budget import Workers, plan_split
from tgo_analysis.statistics import STATISTICS, register_statistic
from tgo_analysis.statistics.base import Context
from tgo_analysis.statistics.token_correlation import TokenCorrelation
from tgo_analysis.statistics.token_spectra import TokenSpectra
from tgo_store.errors import TgoError

FIT = (2, 12)
BUDGET = "200MB"
PER_TOKEN = ("eigenvalues", "alpha", "effective_rank", "stable_rank")  # one BLAS call per token: bit-identical
SUMS = ("cosine_anisotropy", "mean_norm")  # numpy sums over samples: the last bit depends on the token-range width
METRICS = ",".join(PER_TOKEN + SUMS) + ",token_correlation,intrinsic_dimension,all_tokens"


def _store(path, data: np.ndarray, token_chunk: int, sample_chunk: int = 24) -> str:
    """A plain xarray store whose chunks split samples and, in inner chunks of ``token_chunk``, tokens."""
    ds = xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), data)},
                    coords={"checkpoint": np.arange(data.shape[0])})
    ds.chunk({"checkpoint": 1, "layer": 1, "sample": sample_chunk, "token": token_chunk}).to_zarr(
        str(path), zarr_format=3, mode="w")
    return str(path)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    one = planted_activations(n_ckpt=1, n_layer=1, n=1024, t=8, d=24, seed=3)  # reads outweigh the partials
    # no constant token: a rank-deficient all-token spectrum's round-off eigenvalues (and so its
    # flatness) change with the fold's thread count, on the threaded path too
    one[:, :, :, 0] = np.random.default_rng(6).standard_normal(one[:, :, :, 0].shape)
    return {"tokens": _store(root / "tokens.zarr", one, token_chunk=2, sample_chunk=128),
            "one_chunk": _store(root / "one_chunk.zarr", one, token_chunk=8, sample_chunk=128),
            "units": _store(root / "units.zarr", planted_activations(n_ckpt=2, n_layer=2, n=64, t=4, d=16, seed=4),
                            token_chunk=2, sample_chunk=16)}


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="1GB", processes=True,
                      dashboard_address=None) as lc:
        yield lc.scheduler_address


def _threaded(url: str, metrics: str = METRICS) -> xr.Dataset:
    return analyze(xr.open_zarr(url), metrics, fit_range=FIT, memory_budget=BUDGET, progress=False)


def _same(got: xr.Dataset, want: xr.Dataset, per_token_exact: bool) -> None:
    """Per-token spectra identical (sums to the last bit); merged ones to 1e-12 relative to the variable's scale (the
    all-token spectrum's zero eigenvalues are round-off, 1e-14 of its largest, in any merge order)."""
    for name in want.data_vars:
        expected = want[name].values
        if per_token_exact and name in PER_TOKEN:
            np.testing.assert_array_equal(got[name].values, expected, err_msg=name)
        elif per_token_exact and name in SUMS:
            np.testing.assert_allclose(got[name].values, expected, rtol=1e-15, err_msg=name)
        else:
            scale = np.nanmax(np.abs(expected)) if np.isfinite(expected).any() else 0.0
            np.testing.assert_allclose(got[name].values, expected, rtol=1e-12, atol=1e-12 * scale, equal_nan=True,
                                       err_msg=name)


def _env() -> dict[str, str]:
    """The environment of a scheduler, worker or client subprocess: the repository importable, so
    that the test statistics in tests/engine/cluster_support.py unpickle there too."""
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}


def _ctx(t: int, d: int, n: int = 10_000) -> Context:
    return Context(n, t, d, d, 2, ("eigenvalues", "alpha", "token_correlation"))


def test_the_planner_cuts_by_token_range_and_merges_what_needs_every_token() -> None:
    stats = [TokenSpectra(), TokenCorrelation()]
    bounds = sorted({*range(0, 10_001, 64), 10_000})  # 10k samples in blocks of 64
    vit_b8 = _ctx(785, 768)
    split = plan_split(stats, vit_b8, Workers(10, 8, 32 * 2**30), 13, bounds, token_chunk=48)
    # token ranges on inner-chunk edges, read once; token_correlation by sample range, merged
    assert split.per_token == ("token_spectra",) and split.merged == ("token_correlation",)
    assert len(split.token_tasks) == 2 and all(lo % 48 == 0 for lo, _ in split.token_tasks)
    assert split.read_amplification == pytest.approx(2.0)  # once for the token ranges, once for the merge
    # a merge input ships one token_correlation partial (per-pair sums and counts: 20 MB), not a co-moment
    assert len(split.sample_tasks) == 2 and split.merge_bytes == TokenCorrelation().partial_bytes(vit_b8, 785) < 32 * 2**20
    # a budget that binds: more token ranges, each fitting
    tight = plan_split(stats, vit_b8, Workers(10, 8, 2**30), 13, bounds, token_chunk=48)
    assert len(tight.token_tasks) > len(split.token_tasks) and tight.token_task_bytes <= 2**30
    # one token chunk (no token split possible): per-token statistics by sample range, merged;
    # a ViT-B/8 per-token co-moment ships 3.7 GB per merge input
    whole = plan_split(stats, vit_b8, Workers(100, 8, 32 * 2**30), 1, bounds, token_chunk=785)
    assert whole.merged == ("token_spectra", "token_correlation") and not whole.token_tasks
    assert whole.merge_bytes == pytest.approx(3.7e9, rel=0.02) and len(whole.sample_tasks) > 1
    with pytest.raises(TgoError, match="memory budget"):
        plan_split([TokenCorrelation()], _ctx(4000, 768), Workers(2, 1, 10 * 2**20), 1, bounds, 48)


def test_with_one_token_chunk_every_token_range_costs_a_read_so_there_is_one_per_worker() -> None:
    """A ViT-S/8 layer in one token chunk whose co-moment (0.9 GB) outweighs a sample range (the
    benchmarks' scaling store): token ranges, each reading the whole layer, so as many as workers
    (2 reads on 2 workers, 1 on 1), not PIECES_PER_WORKER per worker (4 reads); with token chunks
    enough, the ranges lie on chunk edges and read once."""
    vit_s8 = Context(1024, 785, 384, 384, 4, ("eigenvalues",))
    bounds = [0, 256, 512, 768, 1024]
    for workers, reads in ((1, 1.0), (2, 2.0), (3, 3.0)):
        split = plan_split([TokenSpectra()], vit_s8, Workers(workers, 1, 6 * 2**30), 1, bounds, token_chunk=785)
        assert not split.sample_tasks and len(split.token_tasks) == workers, split
        assert split.read_amplification == pytest.approx(reads)
    chunked = plan_split([TokenSpectra()], vit_s8, Workers(2, 1, 6 * 2**30), 1, bounds, token_chunk=50)
    assert len(chunked.token_tasks) == 4 and chunked.read_amplification == pytest.approx(1.0)


def test_a_local_cluster_splits_a_unit_and_gives_the_threaded_numbers(stores, cluster) -> None:
    want = _threaded(stores["tokens"])
    got = analyze(xr.open_zarr(stores["tokens"]), METRICS, fit_range=FIT, scheduler=cluster, memory_budget=BUDGET,
                  progress=False)
    plan = got.attrs["cluster_plan"]["unit_split"]
    # token ranges on the inner chunks; the all-token statistics' partials (MBs: the all-token
    # co-moment, the TwoNN points) outweigh the 0.6 MB layer, so they are not split by samples
    assert plan["token_tasks"] == 4 and plan["sample_tasks"] == 1 and plan["read_amplification"] == 2, plan
    _same(got, want, per_token_exact=True)
    # one token chunk: the per-token statistics go by sample range too, their partials merged
    small = "eigenvalues,alpha,effective_rank,token_correlation,mean_norm"
    got = analyze(xr.open_zarr(stores["one_chunk"]), small, fit_range=FIT, scheduler=cluster,
                  memory_budget=BUDGET, progress=False)
    plan = got.attrs["cluster_plan"]["unit_split"]
    assert plan["token_tasks"] == 0 and plan["sample_tasks"] == 4 and plan["merges"] == 1, plan
    _same(got, _threaded(stores["one_chunk"], small), per_token_exact=False)


def test_a_killed_worker_is_retried_without_a_lost_or_doubled_partial(stores, cluster, tmp_path) -> None:
    from tests.engine.cluster_support import KilledOnce

    marker = tmp_path / "killed"
    register_statistic(KilledOnce(marker=str(marker)))
    try:
        got = analyze(xr.open_zarr(stores["tokens"]), "killed_once,alpha", fit_range=FIT, scheduler=cluster,
                      memory_budget=BUDGET, progress=False)
    finally:
        STATISTICS.unregister("killed_once")
    assert marker.exists()  # a worker did die
    x = xr.open_zarr(stores["tokens"])["activations"].values[0, 0].astype(np.float64)
    assert got["killed_once_count"].values[0, 0] == x.shape[0]
    np.testing.assert_allclose(got["killed_once_sum"].values[0, 0], x[..., 0].sum(axis=0), rtol=1e-12)


@pytest.mark.slow
def test_a_worker_memory_limit_binds(stores, tmp_path, monkeypatch) -> None:
    """Token accumulators of 460 MB on a 600 MB worker (180 MB of it the worker itself): the
    planner's token ranges fit (half the limit each); one task for every token, planned as if
    the worker had 4 GB, is killed (once: allowed-failures 0). No cut for parallelism: only the
    budget decides the token ranges."""
    import dask
    from distributed import LocalCluster

    from tgo_analysis.engine import budget as cluster

    monkeypatch.setattr(cluster, "PIECES_PER_WORKER", 0)
    rng = np.random.default_rng(5)
    url = _store(tmp_path / "wide.zarr", rng.standard_normal((1, 1, 8, 3500, 128)).astype(np.float32),
                 token_chunk=3500, sample_chunk=8)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=1, threads_per_worker=1, memory_limit="600MB", processes=True,
                         dashboard_address=None) as lc:
        got = analyze(xr.open_zarr(url), "effective_rank", scheduler=lc.scheduler_address, progress=False)
        plan = got.attrs["cluster_plan"]
        assert plan["unit_split"]["token_tasks"] >= 2 and plan["unit_split"]["token_task_bytes"] <= 300e6
        assert np.isfinite(got["effective_rank"].values).all()
        with pytest.raises(TgoError, match="out of memory"):
            analyze(xr.open_zarr(url), "effective_rank", scheduler=lc.scheduler_address, memory_budget="4GB",
                    progress=False)


CLIENT = """
import sys, xarray as xr
from tgo_analysis import analyze
from tgo_analysis.statistics import register_statistic
from tests.engine.cluster_support import Slow
register_statistic(Slow())
analyze(xr.open_zarr(sys.argv[1]), sys.argv[3], fit_range=(2, 12), scheduler=sys.argv[2], out=sys.argv[4],
        memory_budget="200MB", progress=False)
"""


@pytest.fixture(scope="module")
def dask_pair(tmp_path_factory):
    """A real `dask scheduler` and one `dask worker` (2 threads), subprocesses on loopback."""
    root = tmp_path_factory.mktemp("pair")
    info = root / "scheduler.json"
    bin_dir = os.path.dirname(sys.executable)
    procs = [subprocess.Popen([os.path.join(bin_dir, "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(info)], stderr=subprocess.DEVNULL, env=_env())]
    try:
        for _ in range(600):
            if info.exists() and info.stat().st_size:
                break
            time.sleep(0.05)
        address = json.loads(info.read_text())["address"]
        procs.append(subprocess.Popen([os.path.join(bin_dir, "dask"), "worker", address, "--nthreads", "2",
                                       "--memory-limit", "1GB", "--no-dashboard"], stderr=subprocess.DEVNULL, env=_env()))
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)


@pytest.mark.slow
def test_a_dask_scheduler_and_worker_pair_give_the_threaded_numbers(stores, dask_pair) -> None:
    want = _threaded(stores["tokens"])
    got = analyze(xr.open_zarr(stores["tokens"]), METRICS, fit_range=FIT, scheduler=dask_pair,
                  memory_budget=BUDGET, progress=False)
    assert got.attrs["cluster_plan"]["threads_per_worker"] == 2
    _same(got, want, per_token_exact=True)


@pytest.mark.slow
def test_a_killed_client_resumes_from_its_finished_units(stores, dask_pair, tmp_path) -> None:
    from tests.engine.cluster_support import Slow

    url, out, metrics = stores["units"], str(tmp_path / "out.zarr"), "alpha,effective_rank,token_correlation,slow"
    client = subprocess.Popen([sys.executable, "-c", CLIENT, url, dask_pair, metrics, out],
                              stderr=subprocess.PIPE, text=True, env=_env())
    done = tmp_path / "out.zarr" / "_tgo" / "done"
    try:
        deadline = time.monotonic() + 300  # a loaded machine imports slowly
        while time.monotonic() < deadline:
            if len(list(done.glob("*.json"))) >= 1:
                break
            assert client.poll() is None, client.stderr.read()[-2000:]
            time.sleep(0.025)
    finally:
        client.kill()
        client.wait()
    finished = len(list(done.glob("*.json")))
    assert 1 <= finished < 4, finished
    register_statistic(Slow())
    try:
        again = analyze(xr.open_zarr(url), metrics, fit_range=FIT, scheduler=dask_pair, out=out,
                        memory_budget=BUDGET, progress=False)
        want = analyze(xr.open_zarr(url), metrics, fit_range=FIT, memory_budget=BUDGET, progress=False)
    finally:
        STATISTICS.unregister("slow")
    assert again.attrs["analysis_summary"]["units_reused"] == finished
    assert again.attrs["analysis_summary"]["units_computed"] == 4 - finished
    _same(again, want, per_token_exact=False)
