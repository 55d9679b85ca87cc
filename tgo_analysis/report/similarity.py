"""Figures of the similarity section (SPEC 6): linear CKA across layers and checkpoints, updates.

Like ``figures``, each function returns a Figure or None when its variables are absent. CKA is
drawn for every representation the results hold (one row each), the update shares with the
isotropic r / D from the attrs, the yardstick a random r-dim subspace would give.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.report import figures as F
from tgo_analysis.report.sections import Section, register

SIMILARITY_VARIABLES = (N.CKA_LAYERS, N.CKA_CHECKPOINTS, N.UPDATE_NORM, N.UPDATE_TANGENT_ENERGY,
                        N.UPDATE_PCA_ENERGY)
MAX_HEATMAPS = 8  # checkpoints shown as layer x layer heatmaps; more: evenly spaced, first and last always

HEATMAP_TEXT = (
    "Linear CKA (Kornblith et al. 2019) between every pair of layers of one checkpoint, exact from "
    "streamed float64 cross-moments over every sample (not a minibatch estimate); one row per "
    "representation (mean: mean over valid tokens; cls; token:K; all: every token concatenated), "
    "{columns}. 1 = the same representation up to rotation and scale; blocks of "
    "high CKA are layers that represent the inputs alike. It does not say which directions changed, "
    "and linear CKA is dominated by the top principal directions, so two layers can differ in "
    "low-variance directions and still score near 1.")
CONVERGENCE_CAPTION = (
    "Linear CKA between each checkpoint and the reference checkpoint (attr cka_reference, by default "
    "the last) at the same layer, against training step, one line per layer, one panel per representation. A layer whose line "
    "reaches 1 early has stopped changing (relative to the reference) early: lower layers reaching "
    "it before higher ones is the bottom-up convergence of Raghu et al. (2017). It measures "
    "similarity to the end point only, not whether the end point is good, and it is 1 at the "
    "reference by construction.")
UPDATES_TEXT = (
    "Left: mean ‖h_(k+1) − h_k‖ over valid positions, the representation update from checkpoint k to "
    "the next on the same inputs, drawn at step k, one line per layer (compare across layers with "
    "the activation scale in mind: it is not normalised). Right: the share of Σ‖update‖² inside {subspaces}; "
    "dotted: r/D, what a random r-dim subspace gets. {reading}")
TANGENT_SHARE = ("the tangent proxy Q_T of checkpoint k (semi-NMF, solid) and inside its top-r principal directions "
                 "Q_P (same r, dashed)")
PCA_ONLY = ("the top-r principal directions Q_P of checkpoint k (dashed); the tangent share (update_tangent_energy) "
            "is not in these results (`tgo analyze --metrics updates` computes it)")


def updates_caption(res: xr.Dataset) -> str:
    """The updates caption names only the shares these results hold."""
    if N.UPDATE_TANGENT_ENERGY in res:
        return UPDATES_TEXT.format(subspaces=TANGENT_SHARE, reading=(
            "Tangent above PCA would mean updates are tangent-aligned beyond what variance explains; tangent "
            "at or below PCA means the variance directions already account for it."))
    return UPDATES_TEXT.format(subspaces=PCA_ONLY, reading="")


def heatmap_caption(res: xr.Dataset) -> str:
    """The CKA caption, with the checkpoints it shows: all, or which of them when there are too many."""
    n = res.sizes[N.CHECKPOINT]
    columns = ("one column per checkpoint" if n <= MAX_HEATMAPS else
               f"one column for each of {MAX_HEATMAPS} of the {n} checkpoints (evenly spaced, first and last)")
    return HEATMAP_TEXT.format(columns=columns)


def present(res: xr.Dataset) -> bool:
    return any(name in res for name in SIMILARITY_VARIABLES)


def _steps(res: xr.Dataset) -> np.ndarray:
    return np.asarray(res[N.CHECKPOINT].values)


def layer_heatmaps(res: xr.Dataset) -> Any:
    """Rows: representations; columns: the checkpoints (at most MAX_HEATMAPS); each a layer x layer CKA
    image. A layer without a value (cls at layer 0: one vector for every input) is a blank strip, noted."""
    from matplotlib.ticker import MaxNLocator

    if N.CKA_LAYERS not in res:
        return None
    cka = res[N.CKA_LAYERS]
    reps = [str(r) for r in cka[N.REPRESENTATION].values]
    n = cka.sizes[N.CHECKPOINT]
    shown = np.unique(np.linspace(0, n - 1, min(n, MAX_HEATMAPS)).round().astype(int))
    fig, axes = plt.subplots(len(reps), len(shown), figsize=(2.3 * len(shown) + 1.5, 2.4 * len(reps)),
                             squeeze=False, constrained_layout=True)
    image = None
    layers = res[N.LAYER].values
    for row, rep in enumerate(reps):
        for col, ci in enumerate(shown):
            ax = axes[row, col]
            values = cka.isel({N.CHECKPOINT: int(ci)}).sel({N.REPRESENTATION: rep}).values
            image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", origin="lower")
            ax.set_title(f"step {_steps(res)[ci]} · {rep}", fontsize=9)
            ax.set_xlabel("layer", fontsize=8)
            ax.set_ylabel("layer", fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            blank = ~np.isfinite(values).any(axis=0)
            if blank.any():
                names = ", ".join(str(int(v)) for v in layers[blank])
                F.note(ax, f"blank: layer {names}, no value (zero variance)", where="top")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="linear CKA")
    return fig


def _per_layer(ax: Any, res: xr.Dataset, values: np.ndarray, style: str = "o-", **kwargs: Any) -> None:
    """One line per layer of a (checkpoint, layer) array against training step (symlog, as every step axis)."""
    layers = res[N.LAYER].values
    colors = F._colors("viridis", len(layers))
    F.plot_series(ax, _steps(res), [(f"layer {int(layer)}", values[:, li], colors[li])
                                    for li, layer in enumerate(layers)], style, **kwargs)
    F.step_axis(ax, _steps(res))


def convergence(res: xr.Dataset) -> Any:
    """CKA to the reference against step, one line per layer, one panel per representation."""
    if N.CKA_CHECKPOINTS not in res:
        return None
    cka = res[N.CKA_CHECKPOINTS]
    reps = [str(r) for r in cka[N.REPRESENTATION].values]
    fig, axes = plt.subplots(1, len(reps), figsize=(4.0 * len(reps) + 2.5, 3.6), squeeze=False,
                             constrained_layout=True)
    for ax, rep in zip(axes[0], reps, strict=True):
        _per_layer(ax, res, cka.sel({N.REPRESENTATION: rep}).values)
        ax.set_title(f"{rep}: CKA to step {res.attrs.get(N.CKA_REFERENCE, '?')}", fontsize=9)
        ax.set_ylabel("linear CKA to the reference")
        ax.set_ylim(-0.02, 1.02)
    F._legend_right(fig, axes[0, 0], "layer")
    return fig


def updates_over_training(res: xr.Dataset) -> Any:
    """Update norm and the tangent vs PCA share of the updates against step, one line per layer.

    The legend has what is drawn: a colour per layer, and a style key (grey) only for the shares these
    results hold (the demos leave the tangent share out)."""
    if N.UPDATE_NORM not in res and N.UPDATE_PCA_ENERGY not in res:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    if N.UPDATE_NORM in res:
        _per_layer(left, res, res[N.UPDATE_NORM].values)
        left.set_ylabel("mean ‖h_(k+1) − h_k‖")
    left.set_xlabel("training step k (symlog scale)")
    keys = []
    for name, style, label in ((N.UPDATE_TANGENT_ENERGY, "o-", "tangent Q_T"), (N.UPDATE_PCA_ENERGY, "^--", "PCA Q_P")):
        if name in res:
            _per_layer(right, res, res[name].values, style)
            keys.append(plt.Line2D([], [], color="grey", ls=style[1:], marker=style[0], ms=3, label=label))
    right.set_xlabel("training step k (symlog scale)")
    iso = res.attrs.get("update_isotropic_expectation")
    if iso is not None:
        right.axhline(float(iso), color="black", ls=":", lw=1.2, label=f"r/D = {float(iso):.3g}")
        keys.append(plt.Line2D([], [], color="black", ls=":", lw=1.2, label=f"r/D = {float(iso):.3g}"))
    right.set_ylabel("share of Σ‖update‖² in the subspace")
    right.set_ylim(0, 1)
    if keys:
        right.legend(handles=keys, fontsize=7, title="subspace", title_fontsize=7)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", title="layer", fontsize=7)
    return fig


# Shown only for results that have SPEC section 6 statistics (CKA, representation updates).
_section = partial(Section, group="similarity", needs=SIMILARITY_VARIABLES)

register(
    _section("cka_layers", "Layer similarity (linear CKA)", heatmap_caption, lambda r, o: layer_heatmaps(r)),
    _section("cka_convergence", "Convergence order: CKA to the reference checkpoint", CONVERGENCE_CAPTION,
            lambda r, o: convergence(r)),
    _section("updates", "Representation updates between checkpoints", updates_caption,
            lambda r, o: updates_over_training(r)),
)

