"""One sweep of cyclic coordinate descent on non-negative variables (pure numpy, float64).

For min_{z ≥ 0} ½zᵀHz − tᵀz, coordinate j's exact minimiser with the others fixed is
z_j = max(0, z_j + (t_j − H_j z) / H_jj). The sparse semi-NMF's code update (HALS, ``kernels.sparse_seminmf``)
and the batched NNLS's descent (``kernels.tangent_local``) are this sweep over many rows at once.
"""

from __future__ import annotations

import numpy as np


def nonnegative_sweep(z: np.ndarray, target: np.ndarray, gram: np.ndarray, diagonal: np.ndarray) -> None:
    """One sweep over the r coordinates of z (r, m), in place, for the rows' problems with H = ``gram``
    (r, r), its ``diagonal`` (r,) and the linear terms ``target`` (r, m); one (m,) temporary per step."""
    for j in range(z.shape[0]):  # z[j] = max(0, z[j] + (target[j] - gram[j] @ z) / diagonal[j])
        step = gram[j] @ z
        np.subtract(target[j], step, out=step)
        np.divide(step, diagonal[j], out=step)
        step += z[j]
        np.maximum(step, 0.0, out=z[j])
