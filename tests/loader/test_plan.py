"""The epoch plan alone (pure numpy): windows partition every piece, and the round-robin inverse
matches a brute-force DataLoader order."""

from __future__ import annotations

import numpy as np
import pytest

from tgo_store.loader.mixing import parse_buffer
from tgo_store.loader.plan import EpochPlan


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_windows_cover_every_piece_position_once(seed) -> None:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 50, size=23)
    plan = EpochPlan(counts, window=40, batch_size=8, shuffle=True, seed=seed)
    covered = [np.zeros(c, dtype=int) for c in counts]
    for w in range(plan.n_windows):
        parts = plan.window_parts(3, w)
        assert sum(p.hi - p.lo for p in parts) == plan.window_size(w)
        for p in parts:
            covered[p.piece][p.lo:p.hi] += 1
        assert sorted(plan.window_permutation(3, w).tolist()) == list(range(plan.window_size(w)))
    assert all((c == 1).all() for c in covered)
    assert plan.n_batches() == -(-int(counts.sum()) // 8)


def brute_round_robin(counts: list[int], taken: int) -> tuple[list[int], int]:
    given, order, j = [0] * len(counts), [], 0
    while len(order) < sum(counts):
        if given[j] < counts[j]:
            order.append(j)
            given[j] += 1
        j = (j + 1) % len(counts)
    first = order[taken] if taken < len(order) else 0
    return [order[:taken].count(k) for k in range(len(counts))], first


@pytest.mark.parametrize("workers", [1, 2, 3, 5])
def test_worker_taken_inverts_the_round_robin(workers) -> None:
    plan = EpochPlan(np.array([37, 0, 90, 12, 55, 8, 71]), window=24, batch_size=8, shuffle=True, seed=0)
    counts = [sum(plan.window_batches(w) for w in plan.worker_windows(j, workers)) for j in range(workers)]
    for taken in range(plan.n_batches()):
        given, first = plan.worker_taken(taken, workers)
        expected, expected_first = brute_round_robin(counts, taken)
        assert given == expected
        while given[first] >= counts[first]:  # an exhausted role's worker yields nothing: the next one goes first
            first = (first + 1) % workers
        assert first == expected_first


def test_buffer_sizes() -> None:
    assert parse_buffer(1000, 100) == 1000
    assert parse_buffer("1MB", 100) == 10_000 and parse_buffer("1MiB", 2**10) == 2**10
