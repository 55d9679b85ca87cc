"""Per-layer statistics as reductions (chunk / combine / aggregate), and their registry.

``base`` defines the protocol and ``engine`` the one fold they all go through. To add a
statistic: one module here, and one ``register_statistic`` line below (see base.py).
"""

from __future__ import annotations

from tgo_analysis.reductions.all_tokens import AllTokens
from tgo_analysis.reductions.base import (
    STATISTICS,
    Block,
    Context,
    Result,
    Statistic,
    Variable,
    register_statistic,
)
from tgo_analysis.reductions.cosine import CosineAnisotropy
from tgo_analysis.reductions.frequency import Frequency
from tgo_analysis.reductions.gradient_moment import TangentEnrichment
from tgo_analysis.reductions.intrinsic import IntrinsicDimension
from tgo_analysis.reductions.mean_norm import MeanNorm
from tgo_analysis.reductions.pooled import Pooled
from tgo_analysis.reductions.token_correlation import TokenCorrelation
from tgo_analysis.reductions.token_spectra import TokenSpectra

register_statistic(TokenSpectra())
register_statistic(CosineAnisotropy())
register_statistic(TokenCorrelation())
register_statistic(AllTokens())
register_statistic(IntrinsicDimension())
register_statistic(MeanNorm())
register_statistic(Pooled())
register_statistic(Frequency())
register_statistic(TangentEnrichment())

__all__ = ["STATISTICS", "Block", "Context", "Result", "Statistic", "Variable", "register_statistic"]
