"""A newcomer's plug-in, outside tgo: a per-token kurtosis statistic, its kernel and its report section.

Everything a plug-in package would hold, in one module of the tests: a pure-numpy kernel (power sums
that add across sample blocks), the statistic built on ``StatisticBase`` with one declared ``Option``
(a ``tgo analyze`` flag), and a report section registered in ``report.sections``. The test installs
it under the entry-point groups ``tgo.statistics`` and ``tgo.report_sections``; nothing in tgo is edited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from tgo_analysis.report.sections import Section, register
from tgo_analysis.statistics.base import Block, Context, Option, Result, StatisticBase, Variable

KURTOSIS = "kurtosis"
FISHER = Option("kurtosis_fisher", True, "kurtosis_fisher: subtract 3 (excess kurtosis, 0 for a normal)", bool)


def power_sums(x: np.ndarray) -> np.ndarray:
    """(samples, tokens, features) -> (5, tokens, features): n and the sums of x, x², x³, x⁴ in float64;
    two blocks' sums add."""
    x = np.asarray(x, dtype=np.float64)
    x2 = x * x
    return np.stack([np.full(x.shape[1:], float(x.shape[0])), x.sum(0), x2.sum(0), (x2 * x).sum(0), (x2 * x2).sum(0)])


def mean_kurtosis(sums: np.ndarray, fisher: bool) -> np.ndarray:
    """Per token, the (biased, moment) kurtosis of each feature over the samples, averaged over features."""
    n, s1, s2, s3, s4 = sums
    mean = s1 / n
    m2 = s2 / n - mean**2
    m4 = s4 / n - 4 * mean * s3 / n + 6 * mean**2 * s2 / n - 3 * mean**4
    return (m4 / m2**2 - (3.0 if fisher else 0.0)).mean(axis=-1)


@dataclass(frozen=True)
class Kurtosis(StatisticBase):
    """kurtosis: per token, the mean over features of each feature's kurtosis across samples."""

    name: str = KURTOSIS
    metrics: tuple = (KURTOSIS,)
    token_split: bool = True
    options = (FISHER,)

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        return (Variable(KURTOSIS, ("token",), (ctx.n_tokens,)),)

    def chunk(self, block: Block, ctx: Context) -> np.ndarray:
        return power_sums(block.x)

    def combine(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a += b
        return a

    def aggregate(self, partial: np.ndarray, ctx: Context) -> Result:
        return Result({KURTOSIS: mean_kurtosis(partial, bool(ctx.option(FISHER)))})

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        return 5 * n_tokens * ctx.n_features * 8


def draw_kurtosis(res: xr.Dataset, options: dict) -> Any:
    """Per-token kurtosis at the last checkpoint, one line per layer."""
    import matplotlib.pyplot as plt

    if KURTOSIS not in res:
        return None
    last = res[KURTOSIS].isel(checkpoint=-1)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for layer in last["layer"].values:
        ax.plot(last["token"].values, last.sel(layer=layer).values, marker="o", label=f"layer {layer}")
    ax.set_xlabel("token")
    ax.set_ylabel("kurtosis")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


SECTION = Section("kurtosis", "Per-token kurtosis", "The kurtosis of each feature across samples, averaged over "
                 "features, per token at the last checkpoint (one line per layer).", draw_kurtosis,
                 group=KURTOSIS, needs=(KURTOSIS,))
register(SECTION)
