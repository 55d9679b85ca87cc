"""Which metrics an analysis computes: ``--metrics`` parsed against the statistics registry.

Every selectable name comes from a registered statistic: its ``metrics`` and the result names
it declares as ``aliases`` of them (``alpha_r2`` selects ``alpha``), and the ``derived`` results
it computes from the finished results (each selects the metric it requires). ``all`` means every
name of every statistic that ``supports`` the store, with its derived results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tgo_analysis.statistics import statistics
from tgo_analysis.statistics.base import Context, Derived, StatisticBase
from tgo_store.errors import TgoError, did_you_mean


def derived(stats: Sequence[StatisticBase] | None = None) -> list[Derived]:
    """Every result computed from the finished results, in registry order."""
    return [d for s in (statistics() if stats is None else stats) for d in s.derived]


def after_reduction() -> tuple[str, ...]:
    """The names of the derived results (computed from the results, not from activations)."""
    return tuple(d.name for d in derived())


AFTER_REDUCTION = after_reduction()  # the built-ins' (the CLI's --list-metrics)


def selectable() -> tuple[str, ...]:
    """Every metric name ``--metrics`` accepts, in registry order."""
    return tuple(dict.fromkeys((*(m for s in statistics() for m in s.metrics), *after_reduction())))


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
    return list(dict.fromkeys([*(m for s in stats for m in s.metrics if m not in unsupported),
                               *(d.name for d in derived(stats) if d.requires not in unsupported)]))


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
    chosen += [d.requires for d in derived() if d.name in chosen and d.requires not in chosen]
    return tuple(dict.fromkeys(chosen))


def chosen_statistics(ctx: Context) -> list[StatisticBase]:
    """The registered statistics the metrics ask for and their options leave switched on."""
    return [s for s in statistics() if any(ctx.wants(m) for m in s.metrics) and s.enabled(ctx)]
