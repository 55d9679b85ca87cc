"""Test helpers the Dask workers import by name: a statistic whose first fold kills its worker."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from tgo_analysis.statistics.base import Result, StatisticBase, Variable


@dataclass(frozen=True)
class KilledOnce(StatisticBase):
    """Per token, the sum of feature 0 over samples and the sample count; the first ``chunk``
    anywhere creates ``marker`` and kills its worker process (a retried task must not lose or
    double a partial: the count says so exactly)."""

    marker: str = ""
    name: str = "killed_once"
    metrics: tuple = ("killed_once",)
    token_split: bool = False

    def variables(self, ctx):
        return (Variable("killed_once_sum", ("token",), (ctx.n_tokens,)), Variable("killed_once_count", (), ()))

    def chunk(self, block, ctx):
        try:
            with open(self.marker, "x"):
                pass
        except FileExistsError:
            pass
        else:
            os._exit(1)
        return [np.asarray(block.x[..., 0], dtype=np.float64).sum(axis=0), block.x.shape[0]]

    def combine(self, a, b):
        a[0] += b[0]
        a[1] += b[1]
        return a

    def aggregate(self, partial, ctx):
        return Result({"killed_once_sum": partial[0], "killed_once_count": np.float64(partial[1])})

    def partial_bytes(self, ctx, n_tokens):
        return 8 * ctx.n_tokens + 8


@dataclass(frozen=True)
class Slow(StatisticBase):
    """The sample count, aggregated after a pause: units that take long enough to kill a client between."""

    pause: float = 0.3
    name: str = "slow"
    metrics: tuple = ("slow",)
    token_split: bool = False

    def variables(self, ctx):
        return (Variable("slow_count", (), ()),)

    def chunk(self, block, ctx):
        return block.x.shape[0]

    def combine(self, a, b):
        return a + b

    def aggregate(self, partial, ctx):
        import time

        time.sleep(self.pause)
        return Result({"slow_count": np.float64(partial)})

    def partial_bytes(self, ctx, n_tokens):
        return 8
