"""Tiny in-memory tangent stores for the calibration tests of SPEC 8: a null (gradients drawn
independently of the activations, sharing only their un-centred second moment) and a planted store
(each gradient in the span of its position's own active atoms). Seconds per seed."""

from __future__ import annotations

import numpy as np
import xarray as xr

from tgo_store.store import schema as S

SAMPLES, TOKENS, FEATURES, ATOMS, ACTIVE = 40, 8, 16, 4, 2


def sparse_activations(rng: np.random.Generator, n: int = SAMPLES, t: int = TOKENS, d: int = FEATURES,
                       atoms: int = ATOMS, active: int = ACTIVE, noise: float = 0.05, probability: float | None = None):
    """x = Σ_{j∈S_i} z_j w_j + noise, |S_i| = ``active`` of ``atoms`` planted atoms (with ``probability``:
    each atom active with that probability, at least one); (x, codes, atoms)."""
    w = rng.standard_normal((atoms, d))
    codes = np.zeros((n, t, atoms))
    for i in range(n):
        for k in range(t):
            if probability is None:
                on = rng.choice(atoms, active, replace=False)
            else:
                on = np.flatnonzero(rng.random(atoms) < probability)
                on = on if on.size else rng.choice(atoms, 1)
            codes[i, k, on] = rng.uniform(1.0, 3.0, on.size)
    return codes @ w + noise * rng.standard_normal((n, t, d)), codes, w


def tangent_store(acts: np.ndarray, grads: np.ndarray) -> xr.Dataset:
    """One checkpoint, one layer, float32, no padding."""
    return xr.Dataset({S.ACTIVATIONS: (S.DIMS, acts[None, None].astype(np.float32)),
                       S.GRADIENTS: (S.DIMS, grads[None, None].astype(np.float32))})


def null_store(seed: int, noise: float = 0.05, offset: float = 0.0) -> xr.Dataset:
    """Gradients g ~ N(0, E[x xᵀ]) independent of x: the activations' un-centred second moment, and
    nothing else (the reviewer's null for tangent_enrichment_vs_pca and the local test). ``offset``
    adds a constant vector of that norm to every activation (a transformer layer's large mean)."""
    rng = np.random.default_rng(seed)
    acts, _, _ = sparse_activations(rng, noise=noise)
    mean = rng.standard_normal(acts.shape[-1])
    acts = acts + offset * mean / np.linalg.norm(mean)
    flat = acts.reshape(-1, acts.shape[-1])
    second = flat.T @ flat / len(flat)
    grads = rng.multivariate_normal(np.zeros(acts.shape[-1]), second, size=acts.shape[:2])
    return tangent_store(acts, grads)


def planted_store(seed: int, noise: float = 0.05, **shape) -> xr.Dataset:
    """Each gradient a random combination of the planted atoms active at its own position (+ noise);
    ``shape``: ``sparse_activations``' d, atoms, active, probability."""
    rng = np.random.default_rng(seed)
    acts, codes, w = sparse_activations(rng, **shape)
    mix = rng.standard_normal(codes.shape) * (codes > 0)
    grads = mix @ w + noise * rng.standard_normal(acts.shape)
    return tangent_store(acts, grads)
