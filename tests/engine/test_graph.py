"""The engine's graph: a unit's reduction is one dask graph (reads, fold chains, a split_every
combine tree, aggregate), its reads bounded, and its numbers those of float64 numpy on any
scheduler and any cut into sample ranges and token ranges."""

from __future__ import annotations

import dataclasses

import dask.array as da
import numpy as np
import pytest

from tgo_analysis.engine import graph
from tgo_analysis.engine.blocks import LazySlab, UnitSource
from tgo_analysis.engine.graph import SPLIT_EVERY, Plan, compute_local, unit_graph
from tgo_analysis.statistics import statistic
from tgo_analysis.statistics.base import Context


def _unit(n: int = 60, t: int = 5, d: int = 6, rows: int = 3) -> tuple[np.ndarray, UnitSource]:
    x = np.random.default_rng(3).standard_normal((n, t, d)).astype(np.float32) * np.arange(1, d + 1)
    return x, UnitSource(LazySlab(da.from_array(x, chunks=(rows, t, d))))


def _ctx(x: np.ndarray, stat) -> Context:
    n, t, d = x.shape
    return Context(n, t, d, n_rank=d, itemsize=x.dtype.itemsize, metrics=stat.metrics)


def _kinds(delayed) -> dict[str, list]:
    kinds: dict[str, list] = {}
    for key in dict(delayed.dask):
        kinds.setdefault(key[1], []).append(key)
    return kinds


def test_a_unit_is_one_graph_with_a_split_every_combine_tree() -> None:
    stat = statistic("pooled")
    x, source = _unit()
    threads = 2 * SPLIT_EVERY + 1  # more sample ranges than one combine task takes: a two-level tree
    g = unit_graph(source, [stat], _ctx(x, stat), Plan(((0, x.shape[1]),), threads))
    assert len(g.dask.layers) == 1  # one graph, one layer: the scheduler sees the whole reduction
    kinds = _kinds(g)
    n_chunks = 60 // 3
    assert len(kinds["read"]) == n_chunks and len(kinds["fold"]) == n_chunks  # each chunk read and folded once
    levels = sorted({key[4] for key in kinds["combine"]})
    assert levels == [1, 2]
    assert len([k for k in kinds["combine"] if k[4] == 1]) == -(-threads // SPLIT_EVERY)
    deps = {key: {d for d in task.dependencies} for key, task in dict(g.dask).items()}
    assert all(len(deps[k]) <= SPLIT_EVERY for k in kinds["combine"])
    assert len(kinds["aggregate"]) == 1 and len(kinds["assemble"]) == 1


def test_reads_wait_for_the_folds_two_chunks_back() -> None:
    stat = statistic("token_spectra")
    x, source = _unit()
    g = unit_graph(source, [stat], _ctx(x, stat), Plan(((0, 2), (2, 5)), threads=2))
    tasks = dict(g.dask)
    for key in (k for k in tasks if k[1] == "read"):
        p, c = key[2], key[3]
        waits = {d for d in tasks[key].dependencies if d[1] == "fold"}
        assert waits == ({k for k in tasks if k[1] == "fold" and k[2] == p and k[-1] == c - 2} if c >= 2 else set())
    first_reads = [k for k in tasks if k[1] == "read" and k[2] == 1 and k[3] == 0]
    assert all(any(d[1] == "pass-done" for d in tasks[k].dependencies) for k in first_reads)  # pass 2 waits


def _pooled_reference(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    return np.sort(np.linalg.eigvalsh(np.cov(flat, rowvar=False)))[::-1]


@pytest.mark.parametrize("threads", [1, 2, 5, 2 * SPLIT_EVERY + 1])
def test_sample_ranges_and_the_tree_give_float64_numpy(threads: int) -> None:
    stat = statistic("pooled")
    x, source = _unit()
    ctx = _ctx(x, stat)
    got = compute_local(unit_graph(source, [stat], ctx, Plan(((0, x.shape[1]),), threads)), threads)
    ref = _pooled_reference(x)
    np.testing.assert_allclose(got["eigenvalues_pooled"][:len(ref)], ref, rtol=1e-10, atol=1e-12)


def test_token_ranges_passes_and_threads_give_the_same_per_token_numbers() -> None:
    stat = statistic("token_spectra")
    x, source = _unit()
    ctx = dataclasses.replace(_ctx(x, stat), metrics=("eigenvalues",))
    one = graph.reduce_unit(source, [stat], ctx, Plan(((0, 5),), 1))
    many = graph.reduce_unit(source, [stat], ctx, Plan(((0, 2), (2, 3), (3, 5)), 3, max_rows=2))
    xt = x.astype(np.float64)
    ref = np.stack([np.sort(np.linalg.eigvalsh(np.cov(xt[:, t], rowvar=False)))[::-1] for t in range(5)])
    np.testing.assert_allclose(one["eigenvalues"], ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(many["eigenvalues"], ref, rtol=1e-9, atol=1e-12)


def test_the_same_graph_runs_on_a_distributed_client() -> None:
    distributed = pytest.importorskip("distributed")
    stat = statistic("pooled")
    x, source = _unit()
    ctx = _ctx(x, stat)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        got = client.compute(unit_graph(source, [stat], ctx, Plan(((0, x.shape[1]),), 2))).result()
    np.testing.assert_allclose(got["eigenvalues_pooled"][:x.shape[-1]], _pooled_reference(x), rtol=1e-10, atol=1e-12)


@dataclasses.dataclass(frozen=True)
class _Refitted(type(statistic("mean_norm"))):
    """mean_norm with a unit setup whose aggregate needs what ``finish_unit`` adds (as the tangent
    statistic's bootstrap refits are)."""

    name: str = "refitted"
    unit_setup: bool = True

    def fit_rows(self, ctx: Context) -> np.ndarray:
        return np.arange(4)

    def prepare_unit(self, fit, ctx: Context):
        return {"rows": fit.samples.tolist()}

    def finish_parts(self, ctx: Context) -> int:
        return 3

    def finish_unit(self, fit, ctx: Context, part: int = 0):
        return float(np.asarray(fit.x, np.float64)[part].sum())

    def finish_join(self, parts, ctx: Context):
        return {**ctx.params[self.name], "finished": sum(parts)}

    def aggregate(self, partial, ctx: Context):
        result = super().aggregate(partial, ctx)
        assert ctx.params[self.name]["finished"] is not None  # a KeyError when the engine skipped finish_unit
        return result


def test_finish_unit_runs_beside_the_fold_and_only_aggregate_waits_for_it() -> None:
    stat = _Refitted()
    x, source = _unit()
    ctx = _ctx(x, stat)
    prepared = graph.unit_context(ctx, [stat], 0, 0, source)
    assert prepared.fits[stat.name].samples.tolist() == [0, 1, 2, 3]
    g = unit_graph(source, [stat], prepared.ctx, Plan(((0, x.shape[1]),), 2), fits=prepared.fits)
    tasks = dict(g.dask)
    finish = [k for k in tasks if k[1] == "finish"]
    assert len(finish) == 3 and not any(tasks[k].dependencies for k in finish)  # nothing read or folded before them
    joins = [k for k, task in tasks.items() if task.dependencies & set(finish)]
    assert [k[1] for k in joins] == ["finish-join"] and tasks[joins[0]].dependencies == set(finish)
    waiting = {k[1] for k, task in tasks.items() if any(d[1] == "finished" for d in task.dependencies)}
    assert waiting == {"aggregate"}  # the folds never wait for it
    got = graph.reduce_unit(source, [stat], prepared, Plan(((0, x.shape[1]),), 2))
    plain = graph.reduce_unit(source, [statistic("mean_norm")], ctx, Plan(((0, x.shape[1]),), 2))
    assert set(got) == set(plain) and all(np.array_equal(got[k], plain[k], equal_nan=True) for k in got)
    with pytest.raises(KeyError):  # a context without the finish value: the aggregate sees it missing
        graph.reduce_unit(source, [stat], prepared.ctx, Plan(((0, x.shape[1]),), 2))


@dataclasses.dataclass(frozen=True)
class _Parted(type(statistic("mean_norm"))):
    """mean_norm whose aggregate takes three parts computed at once from the folded partial."""

    name: str = "parted"

    def aggregate_parts(self, ctx: Context) -> int:
        return 3

    def aggregate_part(self, partial, ctx: Context, part: int):
        return part

    def with_parts(self, partial, parts, ctx: Context):
        assert list(parts) == [0, 1, 2]  # every part, in order
        return partial


def test_aggregate_parts_run_at_once_from_the_folded_partial() -> None:
    stat = _Parted()
    x, source = _unit()
    ctx = _ctx(x, stat)
    g = unit_graph(source, [stat], ctx, Plan(((0, x.shape[1]),), 2))
    tasks = dict(g.dask)
    aggregates = [k for k in tasks if k[1] == "aggregate"]
    assert len(aggregates) == 2  # one per token sub-range of the 2 threads
    for aggregate in aggregates:
        parts = [k for k in tasks[aggregate].dependencies if k[1] == "aggregate-part"]
        final = tasks[aggregate].dependencies - set(parts)
        assert len(parts) == 3 and all(tasks[k].dependencies == final for k in parts)  # the same folded partial
    got = graph.reduce_unit(source, [stat], ctx, Plan(((0, x.shape[1]),), 2))
    plain = graph.reduce_unit(source, [statistic("mean_norm")], ctx, Plan(((0, x.shape[1]),), 2))
    assert all(np.array_equal(got[k], plain[k], equal_nan=True) for k in plain)
