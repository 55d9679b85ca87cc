"""The reduction engine and its statistics against float64 numpy, whatever the token passes."""

from __future__ import annotations

import numpy as np
import pytest

from tgo_analysis.engine.budget import parse_budget, plan_unit
from tgo_analysis.engine.graph import Plan, reduce_array, split_range
from tgo_analysis.statistics import statistic, statistics
from tgo_analysis.statistics.base import Context, Statistic
from tgo_analysis.statistics.mean_norm import MeanNorm
from tgo_store.errors import TgoError


def activations(n: int = 150, t: int = 7, d: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, t, d)) * np.linspace(0.5, 3, d) + np.arange(t)[:, None]).astype(np.float32)


def test_mean_norm_is_the_mean_l2_norm_of_uncentred_token_vectors() -> None:
    x = activations()
    got = reduce_array(MeanNorm(), x, block_rows=40)["mean_norm"]
    np.testing.assert_allclose(got, np.linalg.norm(x.astype(np.float64), axis=2).mean(axis=0), rtol=1e-12)


def test_mean_norm_leaves_padding_out() -> None:
    from tgo_analysis.statistics.base import Block

    x = activations(n=20, t=3)
    mask = np.ones((20, 3), bool)
    mask[:5, 1] = False
    stat, ctx = MeanNorm(), Context(20, 3, 24)
    got = stat.aggregate(stat.chunk(Block(x, (0, 3), np.arange(20), attention_mask=mask), ctx), ctx).arrays["mean_norm"]
    norms = np.linalg.norm(x.astype(np.float64), axis=2)
    np.testing.assert_allclose(got[1], norms[5:, 1].mean(), rtol=1e-12)
    np.testing.assert_allclose(got[0], norms[:, 0].mean(), rtol=1e-12)


def test_every_registered_statistic_follows_the_protocol() -> None:
    for stat in statistics():
        assert isinstance(stat, Statistic), stat


def test_token_passes_and_threads_do_not_change_per_token_results() -> None:
    x = activations(n=200, t=9)
    stat = statistic("token_spectra")
    ctx = Context(200, 9, 24, n_rank=24, metrics=("eigenvalues", "alpha"), options={"fit_range": (2, 8)})
    one = reduce_array(stat, x, ctx, plan=Plan(((0, 9),), threads=1))
    many = reduce_array(stat, x, ctx, plan=Plan(((0, 2), (2, 5), (5, 9)), threads=2))
    for name in ("eigenvalues", "alpha"):
        np.testing.assert_array_equal(many[name], one[name])
    cov = np.stack([np.cov(x[:, t].astype(np.float64), rowvar=False) for t in range(9)])
    np.testing.assert_allclose(one["eigenvalues"], np.linalg.eigvalsh(cov)[:, ::-1], rtol=1e-10, atol=1e-12)


def test_all_tokens_gram_joined_over_token_passes_is_exact() -> None:
    from tgo_analysis.statistics.all_tokens import AllTokens, AllTokensParams

    x = activations(n=60, t=5, d=8)
    flat = x.reshape(60, -1).astype(np.float64)
    exact = np.linalg.svd(flat - flat.mean(0), compute_uv=False) ** 2 / 59
    ctx = Context(60, 5, 8, n_rank=60, metrics=("all_tokens",), options={"fit_range": (2, 8)},
                  params={"all_tokens": AllTokensParams("gram")})
    got = reduce_array(AllTokens(), x, ctx, block_rows=16, plan=Plan(((0, 2), (2, 5)), threads=2))
    np.testing.assert_allclose(got["eigenvalues_all"][:40], exact[:40], rtol=1e-9)


def test_split_range_and_budget_parsing() -> None:
    assert split_range(0, 5, 2) == [(0, 2), (2, 5)] or split_range(0, 5, 2) == [(0, 3), (3, 5)]
    assert split_range(3, 4, 8) == [(3, 4)]
    assert parse_budget("4GB") == 4_000_000_000 and parse_budget("512MiB") == 512 * 2**20 and parse_budget(1e6) == 10**6
    with pytest.raises(TgoError, match="cannot read memory budget"):
        parse_budget("lots")


def test_plan_splits_tokens_to_fit_and_refuses_a_budget_below_one_token() -> None:
    ctx = Context(10_000, 785, 768, n_rank=768, itemsize=2, metrics=("eigenvalues",))
    stats = [statistic("token_spectra")]
    plan = plan_unit(stats, ctx, parse_budget("2GB"), block_rows=64, threads=2)
    assert len(plan.passes) > 1 and plan.passes[0][0] == 0 and plan.passes[-1][1] == 785
    widest = max(b - a for a, b in plan.passes)
    assert widest * 769 * 768 * 8 < 2e9
    assert len(plan_unit(stats, ctx, parse_budget("8GB"), 64, 2).passes) == 1
    with pytest.raises(TgoError, match="cannot hold one token's accumulators"):
        plan_unit(stats, ctx, parse_budget("20MB"), 64, 2)
