"""The shape every statistic takes, its declared options, and the registry the engine reads.

A statistic is a small object with three pure functions, as in ``dask.array.reductions``:
``chunk(block, ctx)`` turns one sample block of one (checkpoint, layer) into a partial,
``combine(a, b)`` merges two partials (it may update ``a`` in place and return it, so one
partial per accumulator stays alive), and ``aggregate(partial, ctx)`` turns the final partial
into a ``Result`` of SPEC-named arrays. ``partial_bytes(ctx, n_tokens)`` says how much
memory one partial for ``n_tokens`` tokens holds, so the memory budget can plan passes over
token groups before anything is read. A statistic with ``token_split = True`` only ever looks
at the tokens of its block (per-token statistics): the engine may hand it token ranges in
several passes and stitches the results along ``token``; one with ``token_split = False`` sees
every token.

To add a statistic: write one module in ``tgo_analysis/statistics/`` with a frozen dataclass
that subclasses ``StatisticBase`` (``mean_norm.py`` is a short example), and add it to the
built-ins in ``tgo_analysis/statistics/__init__.py`` (or publish it under the entry-point group
``tgo.statistics``). Its ``metrics`` become selectable with ``--metrics``, its ``options``
become ``tgo analyze`` flags and ``analyze()`` keywords, its ``variables`` appear in the
results store; the engine, the results template, the writer and the CLI need no edit.

Every optional hook is declared on ``StatisticBase`` with a default that does nothing, so the
engine calls it without probing: ``fold`` (chunk and combine fused, to keep one live partial),
``joins_tokens`` + ``join_tokens`` (merge partials of disjoint token ranges instead of
stitching results), ``supports(ds)`` (whether ``--metrics all`` includes it for this store),
``enabled(ctx)`` (whether its options switch it off), ``validate(ds, ctx)`` (refuse bad input
before anything is written), ``prepare(ds, ctx)`` (once per analysis: its return is
``ctx.params[name]``), ``unit_setup`` + ``prepare_unit(fit, ctx)`` (once per unit, from the rows
``fit_rows`` names; its return replaces ``ctx.params[name]`` for that unit's fold) and
``finish_unit(fit, ctx, part)`` (what only ``aggregate`` needs, computed beside the fold in ``finish_parts(ctx)``
tasks that ``finish_join`` puts together), ``needs_gradients`` (fill
``Block.gradients``), ``rank_length(ctx)`` (the length it needs of the shared ``rank`` dim),
``coords(ctx)``, ``attrs(ctx)`` (result attrs) and ``temp_bytes(ctx, rows)`` (temporaries of one
fed block of ``rows`` samples, for the budget; default three float64 copies of the block).

Statistics over several (checkpoint, layer) slabs at once (SPEC section 6) declare a
``unit_kind`` other than ``"unit"``: ``"checkpoint_layers"`` (one checkpoint, every layer, in
layer order) or ``"layer_checkpoints"`` (one layer, the anchor checkpoint and the ``partners``
it names, e.g. the reference or the next checkpoint). The engine (``engine.units``, ``engine.graph.group_graph``) reads
the slabs in lockstep over the same sample blocks: ``Block.x`` is the first slab, ``Block.others``
the rest, ``Context.slabs`` says which (checkpoint, layer) each is. Such a statistic plans its
own passes with ``groups(ctx, room)`` (e.g. groups of layer pairs whose cross-moments fit
``room`` bytes); each pass folds with ``Context.group[name]`` set to its group, ``join_groups``
folds a finished pass into the running result, and ``aggregate`` sees the joined value once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from tgo_analysis.kernels.metrics import DEFAULT_FIT_RANGE
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
    others: tuple[np.ndarray, ...] = ()  # the other slabs of a multi-slab unit, same samples and tokens

    def slab(self, index: int) -> np.ndarray:
        """Slab ``index`` of the unit (0 = ``x``), as ``Context.slabs`` orders them."""
        return self.x if index == 0 else self.others[index - 1]

    def rows(self, lo: int, hi: int) -> Block:
        """Samples [lo, hi) of the block (positions within it; views, no copy)."""
        cut = slice(lo, hi)

        def part(v: np.ndarray | None) -> np.ndarray | None:
            return None if v is None else v[cut]

        return Block(self.x[cut], self.tokens, self.samples[cut], part(self.attention_mask), part(self.token_id),
                     part(self.token_special), part(self.gradients), tuple(o[cut] for o in self.others))

    def token_range(self, lo: int, hi: int) -> Block:
        """The same block restricted to tokens [lo, hi) (absolute indices; views, no copy)."""
        a, _ = self.tokens
        cut = slice(lo - a, hi - a)

        def part(v: np.ndarray | None) -> np.ndarray | None:
            return None if v is None else v[:, cut]

        return Block(self.x[:, cut], (lo, hi), self.samples, part(self.attention_mask), part(self.token_id),
                     part(self.token_special), part(self.gradients), tuple(o[:, cut] for o in self.others))


@dataclass(frozen=True)
class Context:
    """What a statistic may know about the unit it reduces, and its parameters.

    ``params`` holds per-statistic parameters keyed by statistic name (what ``prepare`` made of
    the options, e.g. a fitted basis); ``options`` the values of every declared ``Option``;
    ``metrics`` the selected metric names (a statistic writes only what was asked for).
    """

    n_samples: int
    n_tokens: int
    n_features: int
    n_rank: int = 0  # length of the shared `rank` dim (eigenvalue arrays are NaN-padded to it)
    itemsize: int = 4  # bytes per stored activation value
    metrics: tuple[str, ...] = ()
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    device: str = "cpu"  # the analysis device ("cpu", "cuda[:N]", "torch:cpu")
    options: Mapping[str, Any] = field(default_factory=dict)  # every declared Option's value
    backend: Any = None  # the engine's device backend (engine.device.TorchBackend); None on numpy
    slabs: tuple[tuple[int, int], ...] = ()  # multi-slab units: (checkpoint, layer) index of each slab, x first
    group: Mapping[str, Any] = field(default_factory=dict)  # multi-slab units: this pass's group per statistic
    memory_budget: int = 0  # the analysis' memory budget in bytes, parsed once by the engine
    unit: tuple[int, int] = (0, 0)  # (checkpoint, layer) of the unit (a multi-slab unit's anchor)
    n_checkpoints: int = 0  # checkpoints in the store (multi-slab statistics name partner checkpoints)
    n_layers: int = 0

    @property
    def fit_range(self) -> tuple[int, int]:
        """The power-law fit ranks every spectral statistic uses (the shared option ``FIT_RANGE``)."""
        return FIT_RANGE.check(self.options.get(FIT_RANGE.name, FIT_RANGE.default))

    def slab_index(self, checkpoint: int, layer: int) -> int:
        """Where slab (checkpoint, layer) is in the unit's blocks (``Block.slab``)."""
        return self.slabs.index((checkpoint, layer))

    def wants(self, name: str) -> bool:
        return name in self.metrics

    def option(self, option: Option) -> Any:
        """The value of a declared option (its default when the analysis did not set it)."""
        return self.options.get(option.name, option.default)


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


@dataclass(frozen=True)
class Option:
    """One analysis option a statistic owns: ``analyze(name=...)`` and ``tgo analyze --name``.

    ``kind`` is the Python type of its value (``int``, ``float``, ``str``, ``bool``);
    ``optional`` allows None (meaning "the statistic chooses"); ``choices`` restricts a string.
    ``parse`` reads a value that is not simply ``kind(value)`` (``--fit-range 11:100`` or ``(11, 100)``
    -> ``(11, 100)``; a ValueError names the flag); ``spelling`` is the flag when it is not
    ``--name`` (``use_umap`` is ``--umap``); ``metavar`` the placeholder in ``--help``.
    Two statistics may declare the same option (e.g. which positions enter) if the
    declarations are equal: it is then one flag, read by both.
    """

    name: str
    default: Any
    help: str
    kind: type = int
    optional: bool = False
    choices: tuple[str, ...] = ()
    parse: Callable[[Any], Any] | None = None
    spelling: str = ""
    metavar: str = ""

    @property
    def flag(self) -> str:
        return self.spelling or "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """The value converted to ``kind``; TgoError naming the flag when it does not fit."""
        if value is None and (self.optional or self.default is None):
            return None
        if self.parse is not None:
            try:
                return self.parse(value)
            except (TypeError, ValueError):
                raise TgoError(f"cannot read {self.flag} {value!r}; {self.help}") from None
        try:
            converted = value if self.kind is bool and isinstance(value, bool) else self.kind(value)
        except (TypeError, ValueError):
            raise TgoError(f"{self.flag} {value!r} is not a {self.kind.__name__}; {self.help}") from None
        if self.choices and converted not in self.choices:
            raise TgoError(f"unknown {self.flag} {value}; use {', '.join(self.choices)}")
        return converted


def fit_ranks(value: Any) -> tuple[int, int]:
    """``"11:100"`` (or ``"11-100"``, or a pair) -> ``(11, 100)``: power-law fit ranks, inclusive, from 1."""
    first, last = (int(v) for v in (value.replace("-", ":").split(":") if isinstance(value, str) else value))
    return first, last


FIT_RANGE = Option("fit_range", "{}:{}".format(*DEFAULT_FIT_RANGE), "power-law fit ranks, inclusive, from 1, "
                   "as FIRST:LAST, e.g. 11:100", str, parse=fit_ranks, metavar="FIRST:LAST")


@dataclass(frozen=True)
class Derived:
    """A result computed from the finished results, not from activations (``alpha_cluster`` from
    ``alpha``): ``name`` is selectable with ``--metrics`` and selects ``requires`` with it;
    ``compute(result, settings)`` returns its DataArray (``settings``: every declared option's
    value, as ``Context.options``, and the analysis' ``seed``)."""

    name: str
    requires: str
    compute: Callable[[Any, Mapping[str, Any]], Any]


UNIT, CHECKPOINT_LAYERS, LAYER_CHECKPOINTS = "unit", "checkpoint_layers", "layer_checkpoints"
UNIT_KINDS = (UNIT, CHECKPOINT_LAYERS, LAYER_CHECKPOINTS)


class StatisticBase:
    """Declared defaults for every optional member of a statistic (see the module docstring)."""

    name: str
    metrics: tuple[str, ...]
    token_split: bool
    unit_kind: str = UNIT  # what one unit is: "unit" (checkpoint, layer) or a multi-slab kind (UNIT_KINDS)
    options: tuple[Option, ...] = ()
    needs_gradients: bool = False
    joins_tokens: bool = False
    unit_setup: bool = False
    aliases: ClassVar[Mapping[str, str]] = MappingProxyType({})  # result names that select one of ``metrics`` (alpha_r2 -> alpha)
    derived: tuple[Derived, ...] = ()  # results computed from the finished results (``Derived``)

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        raise NotImplementedError

    def chunk(self, block: Block, ctx: Context) -> Any:
        raise NotImplementedError

    def combine(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def aggregate(self, partial: Any, ctx: Context) -> Result:
        raise NotImplementedError

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        raise NotImplementedError

    def fold(self, acc: Any, block: Block, ctx: Context) -> Any:
        part = self.chunk(block, ctx)
        return part if acc is None else self.combine(acc, part)

    def join_tokens(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def supports(self, ds: Any) -> bool:
        return True

    def enabled(self, ctx: Context) -> bool:
        return True

    def validate(self, ds: Any, ctx: Context) -> None:
        return None

    def prepare(self, ds: Any, ctx: Context) -> Any:
        return ctx.params.get(self.name)

    def fit_rows(self, ctx: Context) -> np.ndarray | None:
        """``unit_setup``: the sample rows (sorted) of the unit ``ctx.unit`` that ``prepare_unit`` needs;
        the engine reads them (every token, with the per-position arrays) as one ``Block``."""
        return None

    def prepare_unit(self, fit: Block | None, ctx: Context) -> Any:
        """``unit_setup``: this unit's parameters from the rows the engine read for it (``fit_rows``)."""
        return ctx.params.get(self.name)

    def finish_parts(self, ctx: Context) -> int:
        """``unit_setup``: how many independent tasks ``finish_unit`` is cut into (the engine runs them at once)."""
        return 1

    def finish_unit(self, fit: Block | None, ctx: Context, part: int = 0) -> Any:
        """``unit_setup``: part ``part`` of the rest of this unit's parameters, which only ``aggregate`` needs
        (a bootstrap's refitted bases), from the same rows and ``ctx.params[name]`` as ``prepare_unit`` made
        it. The engine runs each part as a task of the unit's graph beside the fold; the default adds nothing."""
        return ctx.params.get(self.name)

    def aggregate_parts(self, ctx: Context) -> int:
        """How many independent tasks precede ``aggregate`` (``aggregate_part``), run at once once the partial
        is folded and the unit finished; 0 (the default): ``aggregate`` alone. A partial merged elsewhere
        (a cluster's cut unit) reaches ``aggregate`` without them, so ``aggregate`` does that work itself."""
        return 0

    def aggregate_part(self, partial: Any, ctx: Context, part: int) -> Any:
        """Part ``part`` of the work ``aggregate`` would do (a bootstrap's scoring of some replicates);
        ``aggregate`` gets them in order through ``with_parts``."""
        return None

    def with_parts(self, partial: Any, parts: Sequence[Any], ctx: Context) -> Any:
        """The partial ``aggregate`` takes, given the ``aggregate_part`` values in order (the default: unchanged)."""
        return partial

    def finish_join(self, parts: Sequence[Any], ctx: Context) -> Any:
        """``unit_setup``: what ``aggregate`` sees as ``ctx.params[name]``, from the ``finish_unit`` parts in
        order (the default: the only part)."""
        return parts[0]

    def rank_length(self, ctx: Context) -> int:
        return 0

    def coords(self, ctx: Context) -> dict[str, tuple[str, np.ndarray]]:
        return {}

    def attrs(self, ctx: Context) -> dict[str, Any]:
        return {}

    def temp_bytes(self, ctx: Context, rows: int) -> int:
        return TEMP_COPIES * rows * ctx.n_tokens * ctx.n_features * 8

    def reads_twice(self, ctx: Context) -> bool:
        """Whether the engine reads the unit a second time for this statistic (``second_pass``)."""
        return False

    def second_pass(self, partial: Any, ctx: Context) -> Any:
        """The fold of the second read, made from the first read's final partial (e.g. the means to
        centre by): an object with ``name``, ``fold(acc, block, ctx)`` and ``combine(a, b)``; None when
        this unit needs no second read."""
        return None

    def reads(self, ctx: Context) -> int:
        """How many times the engine reads the unit for this statistic: 1, 2 when it ``reads_twice``, more
        for one whose every read depends on the last (a randomized SVD's power iterations): read k > 2
        folds with ``next_pass`` of read k - 1."""
        return 2 if self.reads_twice(ctx) else 1

    def next_pass(self, fold: Any, partial: Any, ctx: Context) -> Any:
        """The fold of the next read, from the previous read's fold and its final partial (``reads`` > 2)."""
        return None

    def aggregate_twice(self, partial: Any, second: Any, ctx: Context) -> Result:
        """``aggregate`` with the last read's final partial (None when it was not needed)."""
        return self.aggregate(partial, ctx)

    def partners(self, checkpoint: int, ctx: Context) -> tuple[int, ...]:
        """``layer_checkpoints``: the checkpoints read with ``checkpoint`` (empty: nothing to compute there)."""
        return ()

    def groups(self, ctx: Context, room: int) -> tuple[Any, ...]:
        """Multi-slab: one entry per pass over the blocks, each with partials within ``room`` bytes."""
        return (None,)

    def join_groups(self, acc: Any, partial: Any, ctx: Context) -> Any:
        """Multi-slab: fold the partial of a finished pass (``ctx.group`` set) into ``acc`` (None at first)."""
        return partial


TEMP_COPIES = 3  # float64 copies of a fed block a statistic may hold at once (cast, centred, units)


@runtime_checkable
class Statistic(Protocol):
    """What the engine needs of a statistic; ``StatisticBase`` gives every optional member."""

    name: str  # registry key
    metrics: tuple[str, ...]  # names selectable with --metrics that this statistic answers
    token_split: bool  # True: per-token, may be reduced over token ranges in separate passes
    options: tuple[Option, ...]

    def variables(self, ctx: Context) -> tuple[Variable, ...]: ...

    def chunk(self, block: Block, ctx: Context) -> Any: ...

    def combine(self, a: Any, b: Any) -> Any: ...

    def aggregate(self, partial: Any, ctx: Context) -> Result: ...

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int: ...


def check_statistic(stat: Any) -> Any:
    """``stat`` if it is a statistic built on ``StatisticBase``; TgoError saying how otherwise."""
    if not isinstance(stat, StatisticBase):
        raise TgoError(f"{stat!r} is not a statistic; subclass tgo_analysis.statistics.base.StatisticBase and give "
                       "name, metrics, token_split, variables, chunk, combine, aggregate and partial_bytes")
    return stat
