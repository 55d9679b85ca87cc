"""Which TwoNN estimator the intrinsic-dimension statistics use: one shared option (SPEC 5).

``twonn`` (the default) is section 3's: scikit-dimension's convention, the largest 10 % of the
distance ratios discarded. ``microscope`` is LLM-Microscope's (Razzhigaev et al.), fitted on the
lowest 20 % of the ratios, for like-for-like comparison with that paper. Both
``intrinsic_dimension`` and ``intrinsic_dimension_pooled`` declare the option, so it is one flag
(``--id-estimator``), and their attrs say which estimator ran.
"""

from __future__ import annotations

import numpy as np

from tgo_analysis.kernels.twonn import microscope_dimension, twonn_dimension
from tgo_analysis.statistics.base import Context, Option

ESTIMATORS = {"twonn": twonn_dimension, "microscope": microscope_dimension}
ID_ESTIMATOR = Option("id_estimator", "twonn", "intrinsic dimension estimator: twonn (scikit-dimension's TwoNN, "
                      "largest 10 % of ratios discarded) or microscope (LLM-Microscope's, lowest 20 % fitted)", str,
                      choices=tuple(ESTIMATORS))
DESCRIPTIONS = {
    "twonn": "TwoNN (Facco et al. 2017), linear fit through the origin, largest 10 % of the distance ratios "
             "discarded (scikit-dimension's convention)",
    "microscope": "TwoNN as LLM-Microscope's intrinsic_dimension (Razzhigaev et al.): centred, unit mean norm, "
                  "ratios <= 1 + 1e-8 removed, fitted on the lowest 20 % of the distance ratios",
}


def estimator(ctx: Context) -> str:
    return str(ID_ESTIMATOR.check(ctx.option(ID_ESTIMATOR)))


def estimate(points: np.ndarray, ctx: Context) -> float:
    """The chosen estimator on points (N, F)."""
    return ESTIMATORS[estimator(ctx)](points)


def describe(ctx: Context) -> str:
    return DESCRIPTIONS[estimator(ctx)]
