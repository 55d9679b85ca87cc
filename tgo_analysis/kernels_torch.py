"""Kernels on a torch device: the numpy kernels' own update functions run with torch as the array
namespace, so the device path is the tested path.

``kernels/`` never imports torch (it is pure numpy); what a torch device runs lives here and
imports torch only when called. A statistic chooses it for ``--device cuda``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tgo_analysis.kernels.seminmf import (
    DEFAULT_ITERATIONS,
    DEFAULT_TOLERANCE,
    SemiNMFResult,
    fit_codes,
    start,
)


def fit_seminmf(a: np.ndarray, rank: int, *, iterations: int = DEFAULT_ITERATIONS,
                tolerance: float = DEFAULT_TOLERANCE, seed: int = 0, device: Any = "cuda") -> SemiNMFResult:
    """``kernels.seminmf.fit_seminmf`` on a torch device, in float64: the same start, loop and result."""
    import torch

    a, z0, options = start(a, rank, iterations=iterations, tolerance=tolerance, seed=seed, device=str(device))
    to = {"device": torch.device(device), "dtype": torch.float64}
    z, w, history, converged = fit_codes(torch.as_tensor(a, **to), torch.as_tensor(z0, **to), torch,
                                         iterations, tolerance)
    return SemiNMFResult(z.cpu().numpy(), w.cpu().numpy(), np.asarray(history), len(history) - 1,
                         converged, options)
