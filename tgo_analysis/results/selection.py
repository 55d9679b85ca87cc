"""Which metrics an analysis computes: ``--metrics`` parsed against the statistics registry.

Every selectable name comes from a registered statistic: its ``metrics`` and the result names
it declares as ``aliases`` of them (``alpha_r2`` selects ``alpha``). ``all`` means every name
of every statistic that ``supports`` the store, plus clustering, which is computed from the
results after the reduction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tgo_analysis import names as N
from tgo_analysis.statistics import statistics
from tgo_analysis.statistics.base import Context, StatisticBase
from tgo_store.errors import TgoError, did_you_mean

AFTER_REDUCTION = (N.ALPHA_CLUSTER,)  # computed from the results, not from activations


def selectable() -> tuple[str, ...]:
    """Every metric name ``--metrics`` accepts, in registry order."""
    return tuple(dict.fromkeys((*(m for s in statistics() for m in s.metrics), *AFTER_REDUCTION)))


def _aliases() -> dict[str, str]:
    return {alias: metric for s in statistics() for alias, metric in s.aliases.items()}


def _by_statistic() -> dict[str, tuple[str, ...]]:
    """A statistic's name selects every metric it computes (``token_spectra``, ``tangent``), as a group does."""
    return {s.name: s.metrics for s in statistics() if s.name not in s.metrics}


def _for_all(ds: Any) -> list[str]:
    """What ``all`` means for this store: every statistic that supports it (``supports(ds)``); a group
    name several statistics answer (``similarity``) only when all of them support it."""
    stats = statistics()
    unsupported = {m for s in stats if ds is not None and not s.supports(ds) for m in s.metrics}
    return list(dict.fromkeys([*(m for s in stats for m in s.metrics if m not in unsupported), *AFTER_REDUCTION]))


def parse_metrics(metrics: Sequence[str] | str, ds: Any = None) -> tuple[str, ...]:
    """'all', a comma-separated string or a list -> validated metric names."""
    known, aliases, by_statistic = selectable(), _aliases(), _by_statistic()
    items = [metrics] if isinstance(metrics, str) else list(metrics)
    chosen: list[str] = []
    for item in items:
        for name in (s.strip() for s in item.split(",")):
            if name == "all":
                chosen += _for_all(ds)
            elif name in by_statistic:
                chosen += by_statistic[name]
            elif name in aliases:
                chosen.append(aliases[name])
            elif name in known:
                chosen.append(name)
            elif name:
                raise TgoError(f"unknown metric '{name}'{did_you_mean(name, ['all', *known, *aliases, *by_statistic])} "
                               "(`tgo analyze --list-metrics` lists every name)")
    if not chosen:
        raise TgoError("no metric chosen; give all, or names from `tgo analyze --list-metrics`")
    if N.ALPHA_CLUSTER in chosen and N.ALPHA not in chosen:
        chosen.append(N.ALPHA)
    return tuple(dict.fromkeys(chosen))


def chosen_statistics(ctx: Context) -> list[StatisticBase]:
    """The registered statistics the metrics ask for and their options leave switched on."""
    return [s for s in statistics() if any(ctx.wants(m) for m in s.metrics) and s.enabled(ctx)]
