"""Pooled TwoNN on repeated vectors (a decoder's layer 0: repeated tokens share one embedding)."""

from __future__ import annotations

import numpy as np

from tgo_analysis.kernels.twonn import twonn_dimension
from tgo_analysis.statistics.base import Context
from tgo_analysis.statistics.pooled import MIN_DISTINCT_POINTS, distinct_estimate

TWONN = Context(1, 1, 16)  # the default --id-estimator (twonn)


def distinct_twonn(points: np.ndarray) -> float:
    return distinct_estimate(points, TWONN)


def test_duplicates_do_not_drag_the_estimate_to_zero() -> None:
    rng = np.random.default_rng(0)
    plane = rng.standard_normal((600, 2)) @ rng.standard_normal((2, 16))  # a 2-d cloud in 16 features
    repeated = np.concatenate([plane, plane[200:], plane[200:]])  # half the vectors three times over
    naive = twonn_dimension(repeated)
    assert abs(naive - 2.0) > 1.0  # the artefact: zero distances and ratios of 1 around every copy
    assert abs(distinct_twonn(repeated) - 2.0) < 0.4
    assert distinct_twonn(repeated) == twonn_dimension(np.unique(repeated, axis=0))


def test_too_few_distinct_points_give_nan() -> None:
    few = np.repeat(np.eye(8)[: MIN_DISTINCT_POINTS // 4], 50, axis=0)
    assert np.isnan(distinct_twonn(few))
