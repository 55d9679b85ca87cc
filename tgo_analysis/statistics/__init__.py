"""Every statistic an analysis can compute, one module each, and their registry.

``base`` defines the protocol, ``StatisticBase`` (every optional hook, declared) and
``Option`` (a statistic's own analysis options). To add a statistic: one module here and one
entry in the built-ins below, or an entry point in the group ``tgo.statistics`` (see base.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from tgo_analysis.statistics.all_tokens import AllTokens
from tgo_analysis.statistics.base import (
    Block,
    Context,
    Option,
    Result,
    Statistic,
    StatisticBase,
    Variable,
    check_statistic,
)
from tgo_analysis.statistics.cka import CkaCheckpoints, CkaLayers
from tgo_analysis.statistics.cosine import CosineAnisotropy
from tgo_analysis.statistics.frequency import Frequency
from tgo_analysis.statistics.intrinsic import IntrinsicDimension
from tgo_analysis.statistics.mean_norm import MeanNorm
from tgo_analysis.statistics.pooled import Pooled
from tgo_analysis.statistics.tangent import TangentEnrichment
from tgo_analysis.statistics.token_correlation import TokenCorrelation
from tgo_analysis.statistics.token_spectra import TokenSpectra
from tgo_analysis.statistics.updates import RepresentationUpdates
from tgo_store.errors import TgoError, did_you_mean
from tgo_store.plugins import Registry

STATISTICS: Registry[StatisticBase] = Registry("tgo.statistics", [
    TokenSpectra(), CosineAnisotropy(), TokenCorrelation(), AllTokens(), IntrinsicDimension(), MeanNorm(),
    Pooled(), Frequency(), TangentEnrichment(), CkaLayers(), CkaCheckpoints(), RepresentationUpdates(),
])


def register_statistic(stat: StatisticBase) -> StatisticBase:
    """Add a statistic at run time (one with the same name replaces the earlier one)."""
    STATISTICS.register(check_statistic(stat))
    return stat


def statistics() -> list[StatisticBase]:
    """Every registered statistic, in registry order (built-ins, run-time, entry points)."""
    return [check_statistic(s) for s in STATISTICS.entries()]


def statistic(name: str) -> StatisticBase:
    """The registered statistic called ``name`` (a one-line error naming the known ones otherwise)."""
    found = STATISTICS.first(lambda stat: stat.name == name)
    if found is not None:
        return check_statistic(found)
    raise TgoError(f"no statistic called {name!r}{did_you_mean(name, STATISTICS.names())} "
                   "(`tgo analyze --list-metrics` lists them)")


def declared_options(stats: Iterable[StatisticBase] | None = None) -> dict[str, Option]:
    """Every option the statistics declare, by name; a name declared twice must be declared alike."""
    found: dict[str, Option] = {}
    for stat in statistics() if stats is None else stats:
        for option in stat.options:
            if found.setdefault(option.name, option) != option:
                raise TgoError(f"statistic {stat.name} declares option {option.flag} unlike another statistic; "
                               "give both the same declaration or another name")
    return found


__all__ = ["STATISTICS", "Block", "Context", "Option", "Result", "Statistic", "StatisticBase", "Variable",
           "declared_options", "register_statistic", "statistics"]
