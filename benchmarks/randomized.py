"""Row 5: randomized SVD for all tokens concatenated: time and top-100 error against the exact
(Gram) spectrum, without and with power iterations."""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import SIZES


def run(size: str = "small", device: str = "cpu") -> dict[str, float]:
    import dask.array as da

    from tgo_analysis.kernels.spectra import gram_eigenvalues

    _, _, n, t, d = SIZES[size]["store"]
    rng = np.random.default_rng(0)
    features = t * d
    rank = min(n, features)
    left, _ = np.linalg.qr(rng.standard_normal((n, rank)))
    right = rng.standard_normal((features, rank)) / np.sqrt(features)
    x = (left * np.arange(1, rank + 1) ** -0.5) @ right.T
    start = time.perf_counter()
    exact = gram_eigenvalues(x)
    gram_s = time.perf_counter() - start
    out = {"samples": n, "features": features, "gram_seconds": gram_s}
    arr = da.from_array(x, chunks=(max(1, n // 4), features))
    for q in (0, 4):
        start = time.perf_counter()
        centred = arr - arr.mean(axis=0)
        _, s, _ = da.linalg.svd_compressed(centred, k=200, n_power_iter=q, seed=0, compute=False)
        approx = np.sort(np.asarray(s.compute()) ** 2 / (n - 1))[::-1]
        out[f"randomized_q{q}_seconds"] = time.perf_counter() - start
        out[f"randomized_q{q}_top100_max_rel_error"] = float(np.max(np.abs(approx[:100] - exact[:100]) / exact[:100]))
    return out
