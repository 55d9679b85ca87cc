"""The storage noise floor of a spectrum (SPEC 8), pure numpy.

Rounding each stored value x_j to a float format with unit roundoff u adds an error of variance
at most u²·x_j²/3 (uniform on ±u·2^e, 2^e ≤ |x_j|). Summed over the D features that is
u²‖x‖²/3 of variance spread over D directions, so each covariance eigenvalue carries about

    noise_floor = u² · E‖x‖² / (3D)

of rounding noise, E‖x‖² the mean un-centred squared norm of the unit's samples. An eigenvalue
is *resolved* when it is above RESOLVED_FACTOR · noise_floor (and "nonzero" in the SPEC 3
sense, λ > λ₁ · D · eps(float64)); below that the store cannot tell it from rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RESOLVED_FACTOR = 10.0  # an eigenvalue is resolved above this many noise floors
UNIT_ROUNDOFF = {  # u = 2^-(p) for p significand bits (incl. the implicit one): half an ulp at 1
    "float16": 2.0**-11,
    "bfloat16": 2.0**-8,
    "float32": 2.0**-24,
    "float64": 2.0**-53,
}


def unit_roundoff(dtype: Any) -> float:
    """u of a stored dtype (numpy dtype, ml_dtypes bfloat16 or its name); 0 for exact (integer) storage."""
    name = getattr(dtype, "name", None) or str(dtype)
    name = name.rsplit(".", 1)[-1]  # "torch.bfloat16" -> "bfloat16"
    if name in UNIT_ROUNDOFF:
        return UNIT_ROUNDOFF[name]
    try:
        kind = np.dtype(dtype)
    except TypeError:
        return UNIT_ROUNDOFF["float32"]
    if kind.kind == "f":
        return float(np.finfo(kind).eps) / 2
    return 0.0


def mean_square_norm(mean: Any, comoment_trace: Any, count: Any) -> np.ndarray:
    """E‖x‖² = ‖mean‖² + tr(M)/count from moments (numpy arrays or torch tensors), float64, per unit.

    ``mean`` is (..., D), ``comoment_trace`` the trace of each centred co-moment M (...), ``count``
    an int or a per-unit array; a unit with count 0 gives 0.
    """
    m = _numpy(mean)
    trace, n = _numpy(comoment_trace), _numpy(count).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (m * m).sum(axis=-1) + np.where(n > 0, trace / np.maximum(n, 1), 0.0)
    return np.asarray(value, dtype=np.float64)


def moments_mean_square_norm(mean: Any, comoment: Any, count: Any) -> np.ndarray:
    """``mean_square_norm`` from the co-moment matrices themselves (..., D, D): their diagonals' sums."""
    return mean_square_norm(mean, comoment.diagonal(0, -2, -1).sum(-1), count)


def noise_floor(roundoff: float, mean_sq_norm: Any, n_features: int) -> np.ndarray:
    """u² · E‖x‖² / (3D): the per-eigenvalue variance that rounding to the stored dtype adds."""
    return roundoff**2 * np.asarray(mean_sq_norm, dtype=np.float64) / (3.0 * n_features)


def resolved_threshold(floor: Any) -> np.ndarray:
    """The eigenvalue below which a spectrum is not resolved: RESOLVED_FACTOR · noise_floor."""
    return RESOLVED_FACTOR * np.asarray(floor, dtype=np.float64)


def _numpy(value: Any) -> np.ndarray:
    """A numpy array of a numpy value or a torch tensor on any device (duck-typed: no torch import)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)
