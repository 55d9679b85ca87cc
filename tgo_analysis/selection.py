"""Which metrics an analysis computes: ``--metrics`` parsed against the statistics registry.

Every selectable name comes from a registered statistic's ``metrics``; ``all`` means every
one of them plus clustering. A few result names select their statistic (``alpha_r2`` ->
``alpha``, ``mean_token_correlation`` -> ``token_correlation``, ``*_all`` -> ``all_tokens``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tgo_analysis import names as N
from tgo_analysis.reductions import STATISTICS
from tgo_analysis.reductions.base import Statistic
from tgo_store.errors import TgoError

ALIASES = {N.ALPHA_R2: N.ALPHA, N.MEAN_TOKEN_CORRELATION: N.TOKEN_CORRELATION}
AFTER_REDUCTION = (N.ALPHA_CLUSTER,)  # computed from the results, not from activations
ALL_TOKENS_METHODS = ("auto", "gram", "randomized", "off")


def selectable() -> tuple[str, ...]:
    """Every metric name ``--metrics`` accepts, in registry order."""
    return (*(m for s in STATISTICS.values() for m in s.metrics), *AFTER_REDUCTION)


@dataclass(frozen=True)
class Options:
    metrics: tuple[str, ...]
    fit_range: tuple[int, int]
    id_samples: int
    n_clusters: int
    use_umap: bool
    all_tokens: str
    svd_rank: int
    power_iters: int
    seed: int
    device: str = "cpu"

    def wants(self, name: str) -> bool:
        return name in self.metrics

    @property
    def all_tokens_on(self) -> bool:
        return self.wants(N.ALL_TOKENS) and self.all_tokens != "off"


def _for_all(ds: Any) -> list[str]:
    """What ``all`` means for this store: every statistic that supports it (``supports(ds)``)."""
    return [*(m for s in STATISTICS.values() if ds is None or getattr(s, "supports", lambda _: True)(ds)
              for m in s.metrics), *AFTER_REDUCTION]


def parse_metrics(metrics: Sequence[str] | str, ds: Any = None) -> tuple[str, ...]:
    """'all', a comma-separated string or a list -> validated metric names."""
    known = selectable()
    items = [metrics] if isinstance(metrics, str) else list(metrics)
    chosen: list[str] = []
    for item in items:
        for name in (s.strip() for s in item.split(",")):
            if name == "all":
                chosen += _for_all(ds)
            elif name in ALIASES:
                chosen.append(ALIASES[name])
            elif name.endswith(N.ALL_TOKENS_SUFFIX):
                chosen.append(N.ALL_TOKENS)
            elif name in known:
                chosen.append(name)
            elif name:
                raise TgoError(f"unknown metric '{name}'; choose from all, {', '.join(known)}")
    if not chosen:
        raise TgoError(f"no metric chosen; choose from all, {', '.join(known)}")
    if N.ALPHA_CLUSTER in chosen and N.ALPHA not in chosen:
        chosen.append(N.ALPHA)
    return tuple(dict.fromkeys(chosen))


def chosen_statistics(opts: Options) -> list[Statistic]:
    """The registered statistics the options ask for (the device variant of the spectra on a GPU)."""
    from tgo_analysis.reductions.token_spectra import DeviceTokenSpectra, TokenSpectra

    stats = [s for s in STATISTICS.values() if any(opts.wants(m) for m in s.metrics)]
    if not opts.all_tokens_on:
        stats = [s for s in stats if s.name != N.ALL_TOKENS]
    if opts.device != "cpu":
        stats = [DeviceTokenSpectra() if isinstance(s, TokenSpectra) else s for s in stats]
    return stats
