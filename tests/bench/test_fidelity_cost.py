"""Plumbing of the SPEC 8 cost row and the tangent verdicts the documents quote."""

from __future__ import annotations

import pytest

from benchmarks.fidelity_cost import CONFIGS, summarise
from benchmarks.tangent_models import verdicts


def test_the_ratio_is_default_over_extras_off_from_medians_and_pairs():
    runs = [{"config": "default", "wall_s": 12.0, "cpu_s": 10.0}, {"config": "extras_off", "wall_s": 10.0, "cpu_s": 8.0},
            {"config": "extras_off", "wall_s": 9.0, "cpu_s": 9.0}, {"config": "default", "wall_s": 11.0, "cpu_s": 9.0}]
    out = summarise(runs)
    assert out["default"] == {"wall_s": 11.5, "cpu_s": 9.5}
    assert out["ratio_cpu_s"] == pytest.approx(9.5 / 8.5)
    assert out["ratio_wall_s"] == pytest.approx(11.5 / 9.5)
    assert out["ratio_cpu_s_per_pair"] == pytest.approx([10 / 8, 9 / 9])
    assert CONFIGS["extras_off"] == {"isotropic_draws": 0, "tangent_bootstrap": 0}


@pytest.mark.parametrize(("excess", "vs_pca", "local", "pca"), [
    ([0.001, 0.01], [0.9, 1.1], "above", "contains"),
    ([-0.01, 0.01], [1.01, 1.2], "contains", "above"),
    ([-0.02, -0.01], [0.8, 0.99], "below", "below"),
    (None, None, None, None),
])
def test_above_its_null_only_where_the_interval_excludes_it(excess, vs_pca, local, pca):
    row = {"local_tangent_excess_ci": excess, "tangent_enrichment_vs_pca_ci": vs_pca, "metric_reason_tangent": 1}
    out = verdicts(row)
    assert (out["local_vs_null"], out["vs_pca"], out["convergence"]) == (local, pca, "unconverged")
