"""The shape every per-layer statistic takes, and the registry the engine reads.

A statistic is a small object with three pure functions, as in ``dask.array.reductions``:
``chunk(block, ctx)`` turns one sample block of one (checkpoint, layer) into a partial,
``combine(a, b)`` merges two partials (it may update ``a`` in place and return it, so one
partial per accumulator stays alive), and ``aggregate(partial, ctx)`` turns the final partial
into a ``Result`` of SPEC-named arrays. ``partial_bytes(ctx, n_tokens)`` says how much
memory one partial for ``n_tokens`` tokens holds, so the memory budget can plan passes over token groups before
anything is read. A statistic with ``token_split = True`` only ever looks at the tokens of
its block (per-token statistics): the engine may hand it token ranges in several passes and
stitches the results along ``token``; one with ``token_split = False`` sees every token.

To add a statistic: write one module in ``tgo_analysis/reductions/`` with a frozen dataclass
that has these members (``mean_norm.py`` is a 45-line example), and add one line
``register_statistic(YourStatistic())`` to ``tgo_analysis/reductions/__init__.py``. Its
``metrics`` become selectable with ``--metrics``, its ``variables`` appear in the results
store; the reduction engine, the results template and the writer need no edit.

Optional members, duck-typed (the engine checks with ``getattr``): ``fold(acc, block, ctx)``
(chunk and combine fused, to keep one live partial), ``join_tokens(a, b)`` (merge partials of
disjoint token ranges instead of stitching results), ``supports(ds)`` (whether ``--metrics
all`` includes it for this store), ``prepare(ds, ctx)`` (once per analysis) and
``prepare_unit(ds, checkpoint, layer, ctx)`` (once per unit; its return replaces
``ctx.params[name]`` for that unit), ``needs_gradients = True`` (fill ``Block.gradients``),
``coords(ctx)`` (name -> (dim, values) for new dims), ``attrs(ctx)`` (result attrs) and
``temp_bytes(ctx, rows)`` (temporaries of one fed block of ``rows`` samples, for the budget;
default three float64 copies of the block).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tgo_store.errors import TgoError


@dataclass(frozen=True)
class Block:
    """One sample block of one (checkpoint, layer): what ``chunk`` sees.

    ``x`` is (samples, tokens, features) in the store's float dtype (cast to float64 inside
    the statistic); ``tokens`` is the [lo, hi) token range ``x`` covers; ``samples`` the
    sample indices. The per-(sample, token) arrays and ``gradients`` (same shape as ``x``,
    SPEC section 5) are None when the store does not have them.
    """

    x: np.ndarray
    tokens: tuple[int, int]
    samples: np.ndarray
    attention_mask: np.ndarray | None = None
    token_id: np.ndarray | None = None
    token_special: np.ndarray | None = None
    gradients: np.ndarray | None = None

    def token_range(self, lo: int, hi: int) -> Block:
        """The same block restricted to tokens [lo, hi) (absolute indices; views, no copy)."""
        a, _ = self.tokens
        cut = slice(lo - a, hi - a)

        def part(v: np.ndarray | None) -> np.ndarray | None:
            return None if v is None else v[:, cut]

        return Block(self.x[:, cut], (lo, hi), self.samples, part(self.attention_mask), part(self.token_id),
                     part(self.token_special), part(self.gradients))


@dataclass(frozen=True)
class Context:
    """What a statistic may know about the unit it reduces, and its parameters.

    ``params`` holds per-statistic parameters keyed by statistic name (e.g. a fitted basis);
    ``metrics`` the selected metric names (a statistic writes only what was asked for).
    """

    n_samples: int
    n_tokens: int
    n_features: int
    n_rank: int = 0  # length of the shared `rank` dim (eigenvalue arrays are NaN-padded to it)
    itemsize: int = 4  # bytes per stored activation value
    metrics: tuple[str, ...] = ()
    fit_range: tuple[int, int] = (11, 100)
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    device: str = "cpu"  # the analysis device ("cpu", "cuda[:N]", "torch:cpu")

    def wants(self, name: str) -> bool:
        return name in self.metrics


@dataclass(frozen=True)
class Variable:
    """One result variable: its SPEC name, dims after (checkpoint, layer), sizes, dtype, fill."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: Any = np.float64
    fill: Any = np.nan


@dataclass(frozen=True)
class Result:
    """What ``aggregate`` returns: arrays named as ``variables`` (a subset is fine). For a
    token-split statistic their first axis is the token range of the blocks it was given."""

    arrays: Mapping[str, np.ndarray]


@runtime_checkable
class Statistic(Protocol):
    name: str  # registry key
    metrics: tuple[str, ...]  # names selectable with --metrics that this statistic answers
    token_split: bool  # True: per-token, may be reduced over token ranges in separate passes

    def variables(self, ctx: Context) -> tuple[Variable, ...]: ...

    def chunk(self, block: Block, ctx: Context) -> Any: ...

    def combine(self, a: Any, b: Any) -> Any: ...

    def aggregate(self, partial: Any, ctx: Context) -> Result: ...

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int: ...


STATISTICS: dict[str, Statistic] = {}


def register_statistic(stat: Statistic) -> Statistic:
    """Add a statistic to the registry (a second one with the same name replaces the first)."""
    if not isinstance(stat, Statistic):
        raise TgoError(f"{stat!r} is not a Statistic; give it name, metrics, token_split, variables, chunk, "
                       "combine, aggregate and partial_bytes (tgo_analysis/reductions/base.py)")
    STATISTICS[stat.name] = stat
    return stat


def statistics_for(metrics: tuple[str, ...]) -> list[Statistic]:
    """The registered statistics that answer any of ``metrics``, in registry order."""
    return [s for s in STATISTICS.values() if any(m in s.metrics for m in metrics)]
