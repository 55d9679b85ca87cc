"""The tangent kernels as the tangent statistic calls them: the semi-NMF on the options' device, and
a kernel's ValueError (a rank that does not fit, a zero dictionary) as the user's one-line TgoError.

The kernels (``kernels.seminmf``, ``kernels.tangent_energy``) are pure numpy and know no flags;
these wrappers keep their names and signatures, so the statistic reads as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tgo_analysis.kernels import seminmf as NMF
from tgo_analysis.kernels import sparse_seminmf as SPARSE
from tgo_analysis.kernels import tangent_energy as E
from tgo_analysis.statistics.user_errors import user_error

RANK_FIX = "choose a --tangent-rank that fits (or a larger --tangent-subsample)"


def check_rank(rank: int, n_features: int, n_rows: int | None = None) -> None:
    """``kernels.seminmf.check_rank``; TgoError naming --tangent-rank."""
    with user_error(RANK_FIX):
        NMF.check_rank(rank, n_features, n_rows)


def fit_seminmf(a: np.ndarray, rank: int, *, iterations: int = NMF.DEFAULT_ITERATIONS,
                tolerance: float = NMF.DEFAULT_TOLERANCE, seed: int = 0, device: str = "cpu",
                init: np.ndarray | None = None, weights: np.ndarray | None = None,
                sparsity: float = 0.0, precision: type = np.float64) -> NMF.SemiNMFResult:
    """The semi-NMF fit. ``sparsity`` > 0: the sparse fit (``kernels.sparse_seminmf``, numpy; its
    n × r work is small beside the reads). Otherwise Ding's updates: numpy on ``cpu``, the same
    update with torch on a torch device (``kernels_torch``); a warm start (``init``, the bootstrap's
    weighted refits) runs with numpy. ``precision``: the sparse fit's product dtype (a bootstrap refit's float32)."""
    with user_error(RANK_FIX):
        if sparsity > 0:
            return SPARSE.fit_sparse_seminmf(a, rank, sparsity=sparsity, iterations=iterations, tolerance=tolerance,
                                             seed=seed, init=init, weights=weights, precision=precision)
        if device == "cpu" or init is not None:
            return NMF.fit_seminmf(a, rank, iterations=iterations, tolerance=tolerance, seed=seed, init=init,
                                   weights=weights)
        from tgo_analysis import kernels_torch

        return kernels_torch.fit_seminmf(a, rank, iterations=iterations, tolerance=tolerance, seed=seed,
                                         device=device)


def tangent_basis(dictionary: np.ndarray) -> np.ndarray:
    """``kernels.tangent_energy.tangent_basis``; TgoError for a zero dictionary."""
    with user_error("this layer has no tangent subspace; leave it out with --layers"):
        return E.tangent_basis(dictionary)


def control_bases(q_tangent: np.ndarray, draws: int, seed: int | Sequence[int]) -> np.ndarray:
    """``kernels.tangent_energy.control_bases``; TgoError when the rank leaves no room for controls."""
    with user_error(RANK_FIX):
        return E.control_bases(q_tangent, draws, seed)
