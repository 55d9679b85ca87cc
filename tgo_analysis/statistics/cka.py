"""cka_layers and cka_checkpoints (SPEC section 6): exact linear CKA, out of core.

Both read several slabs in lockstep (``engine.units``, ``engine.graph.group_graph``): ``cka_layers`` every layer of one
checkpoint, ``cka_checkpoints`` one layer at a checkpoint and at the reference. For the
``mean``, ``cls`` and ``token:K`` representations a pass folds the concatenated vectors of a
group of sides into one float64 co-moment (Chan's pairwise merge, ``kernels.moments``), so every
cross-moment XᵀY of the group is exact; when the 13 layers of a ViT-B/8 (78 pairs, a 10k × 10k
co-moment per representation) do not fit the budget, the layers are cut into blocks and each
pass covers the pairs of two blocks. ``all`` stashes one token range of every side per pass and
adds its N × N Gram (``join_groups``), as ``all_tokens`` does; it is left out, with the reason in
the attrs, when N is too large for Gram matrices in the memory budget.

SPEC 8: beside each biased value, ``*_debiased`` is CKA from the unbiased HSIC estimator, exact
over all N (``kernels.cka_unbiased``): the feature passes also fold per-side squared-norm sums,
``all`` uses its Gram matrices. ``all`` on a padded store concatenates only the token positions
valid in every sample (attrs ``cka_all_tokens``), never padding as zeros: two independent layers
would otherwise look alike through their shared padding pattern.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.kernels import cka as K
from tgo_analysis.kernels.cka_unbiased import (
    NormSums,
    debiased_block_cka,
    fold_norm_sums,
    gram_debiased_table,
)
from tgo_analysis.kernels.moments import Moments, fold_moments, symmetrize
from tgo_analysis.statistics.all_tokens import GRAM_MAX_SAMPLES, GRAM_SLICE_BYTES
from tgo_analysis.statistics.base import (
    CHECKPOINT_LAYERS,
    LAYER_CHECKPOINTS,
    Block,
    Context,
    Option,
    Result,
    StatisticBase,
    Variable,
)
from tgo_analysis.statistics.user_errors import user_error
from tgo_store.errors import TgoError, nearest_step
from tgo_store.store import schema as S

if TYPE_CHECKING:  # annotations only: `tgo --help` must not import xarray
    import xarray as xr

AUTO = "auto"
REPRESENTATIONS = Option("representations", AUTO, "CKA: the vectors that stand for a sample, comma-separated: "
                         "mean, cls, token:K, all (auto: mean, cls where there is one, all when N allows)", str)
REFERENCE = Option("cka_reference", None, "cka_checkpoints: the reference checkpoint, by its training step "
                   "(-1 or unset: the last)", int, optional=True)


@dataclass(frozen=True)
class CkaSetup:
    """What ``prepare`` fixed: the representations (the coord, in order) and the reference."""

    representations: tuple[str, ...]
    all_absent: str | None = None  # why `all` is not computed (None: computed, or not asked for)
    reference: int | None = None  # index of the reference checkpoint (cka_checkpoints)
    reference_value: Any = None
    all_tokens: tuple[int, ...] | None = None  # `all`: the token positions valid in every sample (None: every one)

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(r for r in self.representations if r != K.ALL)

    @property
    def gram(self) -> bool:
        return K.ALL in self.representations


@dataclass(frozen=True)
class Group:
    """One pass: feature co-moments of ``sides``, or the ``all`` Grams over tokens [lo, hi)."""

    kind: str  # "features" or "gram"
    sides: tuple[int, ...]  # slab indices
    tokens: tuple[int, int] = (0, 0)


@dataclass
class FeaturePartial:
    moments: dict[str, Moments | None]
    norms: dict[str, NormSums | None] = field(default_factory=dict)  # SPEC 8: the unbiased HSIC sums


@dataclass
class GramPartial:
    rows: dict[int, list[np.ndarray]]  # side -> this pass's (n, t, D) rows, padding zeroed


@dataclass
class Joined:
    values: dict[str, np.ndarray]  # representation -> (sides, sides) CKA, NaN where not yet computed
    grams: dict[int, np.ndarray] = field(default_factory=dict)  # side -> Σ X Xᵀ of `all` so far
    debiased: dict[str, np.ndarray] = field(default_factory=dict)  # the same from unbiased HSIC


def _is_cls_store(ds: xr.Dataset) -> bool:
    kinds = ds[S.TOKEN_KIND].values if S.TOKEN_KIND in ds.coords else ()
    return len(kinds) > 0 and str(kinds[0]) == "cls"


def common_tokens(ds: xr.Dataset) -> tuple[int, ...] | None:
    """The token positions valid (attention_mask true) in every sample; None when the store has no padding."""
    if S.ATTENTION_MASK not in ds.coords:
        return None
    every = np.asarray(ds[S.ATTENTION_MASK].values, bool).all(axis=0)
    return None if every.all() else tuple(int(t) for t in np.flatnonzero(every))


def resolve_representations(ds: xr.Dataset, ctx: Context, n_sides: int) -> tuple[tuple[str, ...], str | None]:
    """The representations to compute and, when ``all`` is left out, why (SPEC 6: absent, reason in attrs)."""
    text = str(ctx.option(REPRESENTATIONS))
    auto = text.strip() == AUTO
    names = (K.MEAN, *((K.CLS,) if _is_cls_store(ds) else ()), K.ALL) if auto else K.parse_representations(text)
    for name in names:
        k = K.token_of(name)
        if name == K.CLS and not _is_cls_store(ds):
            raise TgoError("representation cls needs a store whose token 0 is a CLS token (token_kind 'cls'); "
                           "use mean or token:0")
        if k is not None and k >= ctx.n_tokens:
            raise TgoError(f"representation {name} is beyond the store's {ctx.n_tokens} tokens; use token:0 to "
                           f"token:{ctx.n_tokens - 1}")
    if K.ALL not in names:
        return names, None
    budget = int(ctx.memory_budget)
    grams = n_sides * ctx.n_samples**2 * 8
    reason = None
    if ctx.n_samples > GRAM_MAX_SAMPLES:
        reason = (f"all: N = {ctx.n_samples} samples is above {GRAM_MAX_SAMPLES} for N x N Gram matrices; "
                  "mean, cls and token:K are exact for any N")
    elif 2 * grams > budget:
        reason = (f"all: {n_sides} Gram matrices of N = {ctx.n_samples} need {grams / 1e6:.0f} MB, more than half "
                  f"the memory budget ({budget / 1e6:.0f} MB); raise --memory-budget")
    elif common_tokens(ds) == ():
        reason = ("all: no token position is valid (attention_mask true) in every sample, and padding never enters "
                  "as zeros; mean, cls and token:K use each sample's valid tokens")
    return (tuple(n for n in names if n != K.ALL), reason) if reason else (names, None)


class _Cka(StatisticBase):
    """What both CKA statistics share: representations, pass groups, fold, join."""

    token_split: bool = False
    options = (REPRESENTATIONS, REFERENCE)

    def sides(self, ctx: Context) -> tuple[int, ...]:
        raise NotImplementedError

    def _setup(self, ctx: Context) -> CkaSetup:
        value = ctx.params.get(self.name)
        return value if isinstance(value, CkaSetup) else CkaSetup((K.MEAN,))

    def coords(self, ctx: Context) -> dict[str, tuple[str, np.ndarray]]:
        reps = np.array(self._setup(ctx).representations, dtype=np.dtypes.StringDType())
        return {N.REPRESENTATION: (N.REPRESENTATION, reps)}

    def attrs(self, ctx: Context) -> dict[str, Any]:
        setup = self._setup(ctx)
        out: dict[str, Any] = {
            "cka": "linear CKA ‖XᵀY‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) of X, Y centred over samples (Kornblith et al. 2019), "
                   "from exact float64 cross-moments merged with Chan's pairwise update (not minibatch HSIC); "
                   "`all`: ⟨HK_XH, HK_YH⟩ / (‖HK_XH‖ ‖HK_YH‖) of the N x N Gram matrices. Biased: independent "
                   "representations read above 0, the more so the more features per sample.",
            "cka_debiased": "HSIC_1(X, Y) / sqrt(HSIC_1(X, X) HSIC_1(Y, Y)), HSIC_1 the unbiased estimator of Song et "
                            "al. 2012 (linear kernels, Gram diagonals zeroed), exact over all N from streamed float64 "
                            "moments (cross-moments, per-side squared norms and their products, Σ x‖y‖² terms); "
                            "about 0 for independent representations at any N; NaN below 4 samples",
            "cka_representations": ("mean: mean over a sample's valid tokens; cls: token 0 (token_kind cls); "
                                    "token:K: token K, samples where it is padding left out; all: the token "
                                    "positions valid in every sample (cka_all_tokens), concatenated"),
        }
        if setup.all_absent:
            out["cka_all_absent"] = setup.all_absent
        elif setup.gram:
            out["cka_all_tokens"] = "every token" if setup.all_tokens is None else list(setup.all_tokens)
        return out

    def validate(self, ds: xr.Dataset, ctx: Context) -> None:
        if str(ctx.option(REPRESENTATIONS)).strip() != AUTO:
            with user_error("give --representations as any of mean, cls, token:K, all, comma-separated"):
                K.parse_representations(ctx.option(REPRESENTATIONS))

    def temp_bytes(self, ctx: Context, rows: int) -> int:
        setup = self._setup(ctx)
        per_side = rows * ctx.n_features * 8 * (len(setup.features) + 2)  # + the shifted rows of the HSIC sums
        return 2 * rows * ctx.n_tokens * ctx.n_features * 8 + len(self.sides(ctx)) * per_side

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        return 0  # planned per group (``groups``)

    def _feature_bytes(self, ctx: Context, n_sides: int) -> int:
        width = n_sides * ctx.n_features
        return len(self._setup(ctx).features) * (width * width * 8 + width * 8)

    def groups(self, ctx: Context, room: int) -> tuple[Group, ...]:
        """Feature passes (all sides, or pairs of side blocks) then ``all`` passes over token ranges."""
        setup, sides = self._setup(ctx), self.sides(ctx)
        out: list[Group] = []
        if setup.features:
            if self._feature_bytes(ctx, len(sides)) <= room:
                out.append(Group("features", sides))
            else:
                size = max((b for b in range(1, len(sides)) if self._feature_bytes(ctx, 2 * b) <= room), default=0)
                if size == 0:
                    raise TgoError(f"memory budget leaves {room / 1e6:.0f} MB for {self.name}, below the "
                                   f"{self._feature_bytes(ctx, 2) / 1e6:.0f} MB of two slabs' cross-moments "
                                   f"({ctx.n_features} features); raise --memory-budget")
                blocks = [sides[i:i + size] for i in range(0, len(sides), size)]
                out += [Group("features", (*blocks[i], *blocks[j]))
                        for i in range(len(blocks)) for j in range(i + 1, len(blocks))]
        if setup.gram:
            grams = len(sides) * ctx.n_samples**2 * 8
            per_token = len(sides) * ctx.n_samples * ctx.n_features * (ctx.itemsize + 8)
            tokens = min(ctx.n_tokens, (room - 2 * grams - GRAM_SLICE_BYTES) // max(1, per_token))
            if tokens < 1:
                raise TgoError(f"memory budget leaves {room / 1e6:.0f} MB for {self.name}, below the Gram matrices "
                               f"and one token's rows of `all` ({(2 * grams + per_token) / 1e6:.0f} MB); raise "
                               "--memory-budget or leave `all` out of --representations")
            n_passes = math.ceil(ctx.n_tokens / tokens)
            step = math.ceil(ctx.n_tokens / n_passes)
            out += [Group("gram", sides, (lo, min(ctx.n_tokens, lo + step))) for lo in range(0, ctx.n_tokens, step)]
        return tuple(out)

    def fold(self, acc: Any, block: Block, ctx: Context) -> Any:
        group: Group = ctx.group[self.name]
        valid = K.valid_mask(block.x.shape[:2], block.attention_mask)
        if group.kind == "gram":
            acc = acc or GramPartial({s: [] for s in dict.fromkeys(group.sides)})
            lo, hi = group.tokens
            common = self._setup(ctx).all_tokens
            keep = slice(None) if common is None else [t - lo for t in common if lo <= t < hi]
            for s in dict.fromkeys(group.sides):
                acc.rows[s].append(np.array(block.slab(s)[:, lo:hi][:, keep]))
            return acc
        acc = acc or FeaturePartial({r: None for r in self._setup(ctx).features})
        for rep in acc.moments:
            z = np.concatenate([K.representation(block.slab(s), rep, valid) for s in group.sides], axis=1)
            if z.shape[0]:
                acc.moments[rep] = fold_moments(acc.moments[rep], z[:, None, :])
                acc.norms[rep] = fold_norm_sums(acc.norms.get(rep), z, len(group.sides))
        return acc

    def combine(self, a: Any, b: Any) -> Any:
        raise TgoError(f"{self.name} folds its blocks in order (fold), it has no combine")

    def chunk(self, block: Block, ctx: Context) -> Any:
        return self.fold(None, block, ctx)

    def join_groups(self, acc: Joined | None, partial: Any, ctx: Context) -> Joined:
        setup, n = self._setup(ctx), len(ctx.slabs)
        acc = acc or Joined({r: np.full((n, n), np.nan) for r in setup.representations},
                            debiased={r: np.full((n, n), np.nan) for r in setup.representations})
        group: Group = ctx.group[self.name]
        if isinstance(partial, FeaturePartial):
            for rep, moments in partial.moments.items():
                if moments is None or moments.count < 2:
                    continue
                comoment = symmetrize(moments).comoment[0]
                index = np.ix_(np.array(group.sides), np.array(group.sides))
                acc.values[rep][index] = K.block_cka(comoment, ctx.n_features)
                acc.debiased[rep][index] = debiased_block_cka(comoment, partial.norms[rep])
        elif isinstance(partial, GramPartial):
            for s, rows in partial.rows.items():
                count = sum(r.shape[0] for r in rows)
                step = max(1, GRAM_SLICE_BYTES // max(1, count * ctx.n_features * 8))
                width = rows[0].shape[1] if rows else 0
                for lo in range(0, width, step):
                    x = np.concatenate([r[:, lo:lo + step] for r in rows]).astype(np.float64).reshape(count, -1)
                    acc.grams[s] = x @ x.T if s not in acc.grams else acc.grams[s] + x @ x.T
                rows.clear()
        return acc

    def _values(self, joined: Joined) -> tuple[np.ndarray, np.ndarray]:
        """(sides, sides, representations) biased and debiased: the joined CKA, ``all`` from the centred Grams."""
        if joined.grams:
            centred = {s: K.centre_gram(g) for s, g in joined.grams.items()}
            table, debiased = joined.values[K.ALL], joined.debiased[K.ALL]
            for a in centred:
                for b in centred:
                    if a <= b:
                        table[a, b] = table[b, a] = K.gram_cka(centred[a], centred[b])
            for (a, b), value in gram_debiased_table(centred).items():
                debiased[a, b] = debiased[b, a] = value
        return (np.stack(list(joined.values.values()), axis=-1),
                np.stack([joined.debiased[r] for r in joined.values], axis=-1))

    def _result(self, values: tuple[np.ndarray, np.ndarray], names: tuple[str, str], ctx: Context) -> Result:
        """The biased and the debiased table, each where the metrics ask for it (``_wanted``)."""
        return Result({name: value for name, value in zip(names, values, strict=True) if self._wanted(ctx, name)})

    def _wanted(self, ctx: Context, name: str) -> bool:
        """Each row by its name; the debiased row also with the biased one and its group (SPEC 8 selection)."""
        return ctx.wants(N.SIMILARITY) or ctx.wants(self.name) or ctx.wants(name)


@dataclass(frozen=True)
class CkaLayers(_Cka):
    name: str = N.CKA_LAYERS
    metrics: tuple[str, ...] = (N.SIMILARITY, N.CKA_LAYERS, N.CKA_LAYERS_DEBIASED)
    unit_kind: str = CHECKPOINT_LAYERS

    def supports(self, ds: xr.Dataset) -> bool:
        return ds.sizes.get(S.LAYER, 0) >= 2

    def sides(self, ctx: Context) -> tuple[int, ...]:
        return tuple(range(len(ctx.slabs) or ctx.n_layers))

    def prepare(self, ds: xr.Dataset, ctx: Context) -> CkaSetup:
        reps, reason = resolve_representations(ds, ctx, ds.sizes[S.LAYER])
        return CkaSetup(reps, reason, all_tokens=common_tokens(ds))

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        shape = (ctx.n_layers, len(self._setup(ctx).representations))
        return tuple(Variable(name, (N.LAYER_OTHER, N.REPRESENTATION), shape)
                     for name in (N.CKA_LAYERS, N.CKA_LAYERS_DEBIASED) if self._wanted(ctx, name))

    def aggregate(self, partial: Joined, ctx: Context) -> Result:
        """(layer, layer_other, representation) for the checkpoint: the engine writes one layer per cell."""
        return self._result(self._values(partial), (N.CKA_LAYERS, N.CKA_LAYERS_DEBIASED), ctx)


@dataclass(frozen=True)
class CkaCheckpoints(_Cka):
    name: str = N.CKA_CHECKPOINTS
    metrics: tuple[str, ...] = (N.SIMILARITY, N.CKA_CHECKPOINTS, N.CKA_CHECKPOINTS_DEBIASED)
    unit_kind: str = LAYER_CHECKPOINTS

    def supports(self, ds: xr.Dataset) -> bool:
        return ds.sizes.get(S.CHECKPOINT, 0) >= 2

    def prepare(self, ds: xr.Dataset, ctx: Context) -> CkaSetup:
        reps, reason = resolve_representations(ds, ctx, 2)
        steps = np.asarray(ds[S.CHECKPOINT].values) if S.CHECKPOINT in ds.coords else np.arange(ctx.n_checkpoints)
        given = ctx.option(REFERENCE)
        if given is None or int(given) == -1:  # steps are never negative: -1 is the last, as everywhere in tgo
            index = len(steps) - 1
        else:
            found = np.flatnonzero(steps == given)
            if not found.size:
                shown = ", ".join(str(v) for v in steps[:8]) + (", ..." if len(steps) > 8 else "")
                raise TgoError(f"--cka-reference {given} is not a training step of this store{nearest_step(given, steps)} "
                               f"(it has {shown}); give one of them, or -1 for the last")
            index = int(found[0])
        value = steps[index].item() if hasattr(steps[index], "item") else steps[index]
        return CkaSetup(reps, reason, index, value, common_tokens(ds))

    def attrs(self, ctx: Context) -> dict[str, Any]:
        setup = self._setup(ctx)
        return {**super().attrs(ctx), N.CKA_REFERENCE: setup.reference_value,
                "cka_reference_index": setup.reference}

    def partners(self, checkpoint: int, ctx: Context) -> tuple[int, ...]:
        reference = self._setup(ctx).reference
        return (ctx.n_checkpoints - 1 if reference is None else reference,)

    def sides(self, ctx: Context) -> tuple[int, ...]:
        if not ctx.slabs:
            return (0, 1)
        checkpoint, layer = ctx.slabs[0]
        return (0, ctx.slab_index(self.partners(checkpoint, ctx)[0], layer))

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        shape = (len(self._setup(ctx).representations),)
        return tuple(Variable(name, (N.REPRESENTATION,), shape)
                     for name in (N.CKA_CHECKPOINTS, N.CKA_CHECKPOINTS_DEBIASED) if self._wanted(ctx, name))

    def aggregate(self, partial: Joined, ctx: Context) -> Result:
        a, b = self.sides(ctx)
        values = tuple(v[a, b] for v in self._values(partial))
        return self._result(values, (N.CKA_CHECKPOINTS, N.CKA_CHECKPOINTS_DEBIASED), ctx)
