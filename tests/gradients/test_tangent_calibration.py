"""SPEC 8's references for the tangent intervals: matched-centring PCA on the reviewer's null, and
the 20-seed calibration of the refitting bootstrap on tiny in-memory stores (null and planted)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.gradients.tangent_stores import ATOMS, null_store, planted_store
from tests.gradients.test_tangent_baselines import run
from tgo_analysis import names as N
from tgo_analysis.kernels.bootstrap import DEFAULT_REPLICATES
from tgo_analysis.kernels.sparse_seminmf import DEFAULT_SPARSITY

SEEDS = 20
CALIBRATION = {"rank": ATOMS, "subsample": 4096, "iterations": 500, "tolerance": 1e-6, "control_draws": 8,
               "bootstrap": DEFAULT_REPLICATES, "stability": False}  # what `tgo analyze` runs


def contains(interval: np.ndarray, value: float) -> bool:
    return bool(interval[0] <= value <= interval[1])


def test_gradients_sharing_only_the_uncentred_second_moment_read_one_against_matched_pca():
    """g ~ N(0, E[x xᵀ]) independently of x: ≈ 1 against the matched (un-centred) PCA subspace, while
    the centred one, which misses the mean direction, reads the same gradients as 'above PCA'."""
    _, out = run(null_store(0, noise=0.5, offset=10.0), CALIBRATION)
    assert out[N.TANGENT_ENRICHMENT_VS_PCA] == pytest.approx(1, abs=0.02)
    assert out[N.TANGENT_ENERGY] / out[N.PCA_ENERGY_CENTRED] > 1.1
    assert contains(out[N.TANGENT_ENRICHMENT_VS_PCA_CI], 1.0)


@pytest.mark.slow
def test_null_intervals_contain_the_null_and_planted_excess_is_detected_over_20_seeds():
    """SPEC 8: ≥ 80 % of the null seeds' 90 % intervals hold 1 (vs PCA) and 0 (local excess); the
    planted store's excess interval excludes 0 in ≥ 90 % of seeds. The planted excess is also
    compared with its own definition (local − null) seed by seed."""
    vs_pca = excess = detected = 0
    for seed in range(SEEDS):
        _, null = run(null_store(seed, noise=0.5), CALIBRATION)
        vs_pca += contains(null[N.TANGENT_ENRICHMENT_VS_PCA_CI], 1.0)
        excess += contains(null[N.LOCAL_TANGENT_EXCESS_CI], 0.0)
        _, planted = run(planted_store(seed), CALIBRATION)
        assert planted[N.LOCAL_TANGENT_EXCESS] == pytest.approx(
            planted[N.LOCAL_TANGENT_ENERGY] - planted[N.LOCAL_TANGENT_NULL], abs=1e-12)
        detected += planted[N.LOCAL_TANGENT_EXCESS_CI][0] > 0
    assert vs_pca >= 0.8 * SEEDS
    assert excess >= 0.8 * SEEDS
    assert detected >= 0.9 * SEEDS


LOCAL_STORE = {"d": 64, "atoms": 8, "probability": 0.35}  # the reviewer's shape: the true atoms read 2.7x their null


def test_planted_local_structure_reads_at_least_1_8x_its_null():
    """Issue 29: on a planted store of 8 atoms in D = 64, each active with probability 0.35, the
    fitted atoms' local share is ≥ 1.8x its null in every one of 10 seeds. Plain semi-NMF
    (``sparsity`` 0) mixes the atoms and reads about 1.3x on the same stores: the test can fail."""
    options = {**CALIBRATION, "rank": LOCAL_STORE["atoms"], "bootstrap": 0, "stability": False}
    ratios = {}
    for sparsity in (DEFAULT_SPARSITY, 0.0):
        ratios[sparsity] = [out[N.LOCAL_TANGENT_ENERGY] / out[N.LOCAL_TANGENT_NULL]
                            for out in (run(planted_store(seed, **LOCAL_STORE), {**options, "sparsity": sparsity})[1]
                                        for seed in range(10))]
    assert min(ratios[DEFAULT_SPARSITY]) >= 1.8
    assert np.mean(ratios[0.0]) < 1.5
