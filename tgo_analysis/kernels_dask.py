"""Kernels over a whole dask array: the randomized spectrum of all tokens concatenated (Halko,
Martinsson & Tropp) when N is too large to decompose.

``kernels/`` is pure numpy per block; this one needs every pass over the matrix that dask's
``svd_compressed`` makes, so it stays outside until the engine runs it as a declared second
pass (issue 28).
"""

from __future__ import annotations

import numpy as np


def randomized_eigenvalues(x, k: int, n_power_iter: int = 4, seed: int = 0) -> np.ndarray:
    """Top-k covariance eigenvalues of a dask array x (N, F) with dask's svd_compressed.

    Centred on the fly; at least 4 power iterations (without them truncated spectra decay too
    fast and inflate alpha).
    """
    import dask.array as da

    if n_power_iter < 4:
        raise ValueError("randomized spectra need at least 4 power iterations")
    x = da.asarray(x).astype(np.float64)
    centred = x - x.mean(axis=0)
    k = int(min(k, *x.shape))
    _, s, _ = da.linalg.svd_compressed(
        centred, k=k, n_power_iter=n_power_iter, seed=seed, compute=False
    )
    s = np.asarray(s.compute())
    return np.sort(s**2 / (x.shape[0] - 1))[::-1]
