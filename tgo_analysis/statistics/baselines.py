"""What the spectral statistics share for SPEC 8: the stored dtype's roundoff and the isotropic baselines.

Every spectrum (per token, pooled, all tokens) comes with ``noise_floor`` and ``resolved_rank``;
per-token and pooled spectra also with ``n_samples`` and ``<metric>_isotropic`` for each metric of
``N.ISOTROPIC_METRICS`` that is asked for (or whose baseline is asked for by name). The arithmetic
is in ``kernels.noise_floor`` and ``kernels.isotropic``; this module holds the option, the
roundoff a statistic's ``prepare`` reads from the store, and the selection rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.kernels.isotropic import (
    DEFAULT_DRAWS,
    MIN_DRAWS,
    isotropic_attrs,
    isotropic_table,
)
from tgo_analysis.kernels.noise_floor import UNIT_ROUNDOFF, unit_roundoff
from tgo_analysis.statistics.base import Context, Option, Variable
from tgo_store.errors import TgoError

ISOTROPIC_DRAWS = Option("isotropic_draws", DEFAULT_DRAWS, f"seeded N(0, I) draws behind each <metric>_isotropic "
                         f"baseline (at least {MIN_DRAWS}; 0 leaves the baselines out)")
ROUNDOFF = "roundoff"  # key of the stored dtype's unit roundoff in a statistic's prepared params
_BY_ITEMSIZE = {2: UNIT_ROUNDOFF["float16"], 4: UNIT_ROUNDOFF["float32"], 8: UNIT_ROUNDOFF["float64"]}


def check_draws(ctx: Context) -> int:
    """The number of isotropic draws, refused in one line below the SPEC's minimum (0 switches them off)."""
    draws = int(ctx.option(ISOTROPIC_DRAWS))
    if draws != 0 and draws < MIN_DRAWS:
        raise TgoError(f"--isotropic-draws {draws} is below {MIN_DRAWS}; give at least {MIN_DRAWS} draws, or 0 to "
                       "leave the <metric>_isotropic baselines out")
    return draws


def store_roundoff(ds: Any) -> float:
    """u of the dataset's stored ``activations`` dtype (float16 2^-11, bfloat16 2^-8, float32 2^-24)."""
    from tgo_store.store import schema as S

    return unit_roundoff(ds[S.ACTIVATIONS].dtype)


def roundoff(ctx: Context, params: Any) -> float:
    """The roundoff a statistic's ``prepare`` recorded (``params`` a dict or an object with ``roundoff``);
    without one (a unit reduced outside ``analyze``) the float format of the stored item size."""
    value = params.get(ROUNDOFF) if isinstance(params, dict) else getattr(params, ROUNDOFF, None)
    return float(value) if value is not None else _BY_ITEMSIZE.get(ctx.itemsize, UNIT_ROUNDOFF["float32"])


def isotropic_wanted(ctx: Context, suffix: str = "", wanted: bool = False) -> tuple[str, ...]:
    """The metrics of ``N.ISOTROPIC_METRICS`` whose baseline is written for the spectrum named with
    ``suffix`` ("" per token, "_pooled"): the metric asked for, or its baseline by name, or ``wanted``
    (a group such as ``pooled``); none with 0 draws."""
    if int(ctx.option(ISOTROPIC_DRAWS)) == 0:
        return ()
    return tuple(m for m in N.ISOTROPIC_METRICS
                 if wanted or ctx.wants(m + suffix) or ctx.wants(N.isotropic(m + suffix)))


def isotropic_names(suffix: str = "") -> tuple[str, ...]:
    """Every baseline result name of the spectrum named with ``suffix``."""
    return tuple(N.isotropic(m + suffix) for m in N.ISOTROPIC_METRICS)


def floor_variables(dims: tuple[str, ...], shape: tuple[int, ...], suffix: str = "",
                    counts: bool = True) -> tuple[Variable, ...]:
    """``noise_floor``, ``resolved_rank`` and (``counts``) ``n_samples`` with the spectrum's dims."""
    out = [Variable(N.NOISE_FLOOR + suffix, dims, shape), Variable(N.RESOLVED_RANK + suffix, dims, shape, np.int64, -1)]
    if counts:
        out.append(Variable(N.N_SAMPLES + suffix, dims, shape, np.int64, -1))
    return tuple(out)


def isotropic_arrays(counts: np.ndarray, names: tuple[str, ...], ctx: Context, params: Any,
                     suffix: str = "") -> dict[str, np.ndarray]:
    """``<metric><suffix>_isotropic`` for each unit's count (``names`` are metric names without suffix)."""
    if not names:
        return {}
    table = isotropic_table(counts, ctx.n_features, ctx.fit_range, roundoff(ctx, params),
                            int(ctx.option(ISOTROPIC_DRAWS)), ctx.seed)
    return {N.isotropic(m + suffix): table[m] for m in names}


def baseline_attrs(ctx: Context) -> dict[str, Any]:
    """The isotropic baselines' draws, seed and method (empty when they are off)."""
    draws = int(ctx.option(ISOTROPIC_DRAWS))
    return isotropic_attrs(draws, ctx.seed) if draws else {}
