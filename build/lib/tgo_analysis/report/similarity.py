"""Figures of the similarity section (SPEC 6): linear CKA across layers and checkpoints, updates.

Like ``figures``, each function returns a Figure or None when its variables are absent. CKA is
drawn for every representation the results hold (one row each), the update shares with the
isotropic r / D from the attrs, the yardstick a random r-dim subspace would give.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from tgo_analysis import names as N

SIMILARITY_VARIABLES = (N.CKA_LAYERS, N.CKA_CHECKPOINTS, N.UPDATE_NORM, N.UPDATE_TANGENT_ENERGY,
                        N.UPDATE_PCA_ENERGY)
MAX_HEATMAPS = 5  # checkpoints shown as layer x layer heatmaps (evenly spaced, first and last always)

HEATMAP_CAPTION = (
    "Linear CKA (Kornblith et al. 2019) between every pair of layers of one checkpoint, exact from "
    "streamed float64 cross-moments over every sample (not a minibatch estimate); one row per "
    "representation (mean: mean over valid tokens; cls; token:K; all: every token concatenated), "
    "one column per checkpoint. 1 = the same representation up to rotation and scale; blocks of "
    "high CKA are layers that represent the inputs alike. It does not say which directions changed, "
    "and linear CKA is dominated by the top principal directions, so two layers can differ in "
    "low-variance directions and still score near 1.")
CONVERGENCE_CAPTION = (
    "Linear CKA between each checkpoint and the reference checkpoint (attr cka_reference, by default "
    "the last) at the same layer, against training step, one line per layer. A layer whose line "
    "reaches 1 early has stopped changing (relative to the reference) early: lower layers reaching "
    "it before higher ones is the bottom-up convergence of Raghu et al. (2017). It measures "
    "similarity to the end point only, not whether the end point is good, and it is 1 at the "
    "reference by construction.")
UPDATES_CAPTION = (
    "Left: mean ‖h_(k+1) − h_k‖ over valid positions, the representation update from checkpoint k to "
    "the next on the same inputs, drawn at step k, one line per layer (compare across layers with "
    "the activation scale in mind: it is not normalised). Right: the share of Σ‖update‖² inside the "
    "tangent proxy Q_T of checkpoint k (semi-NMF, solid) and inside its top-r principal directions "
    "Q_P (same r, dashed); dotted: r/D, what a random r-dim subspace gets. Tangent above PCA would "
    "mean updates are tangent-aligned beyond what variance explains; tangent at or below PCA means "
    "the variance directions already account for it.")


def present(res: xr.Dataset) -> bool:
    return any(name in res for name in SIMILARITY_VARIABLES)


def _steps(res: xr.Dataset) -> np.ndarray:
    return np.asarray(res[N.CHECKPOINT].values)


def layer_heatmaps(res: xr.Dataset) -> Any:
    """Rows: representations; columns: a few checkpoints; each a layer x layer CKA image."""
    if N.CKA_LAYERS not in res:
        return None
    cka = res[N.CKA_LAYERS]
    reps = [str(r) for r in cka[N.REPRESENTATION].values]
    n = cka.sizes[N.CHECKPOINT]
    shown = np.unique(np.linspace(0, n - 1, min(n, MAX_HEATMAPS)).round().astype(int))
    fig, axes = plt.subplots(len(reps), len(shown), figsize=(2.6 * len(shown) + 1, 2.5 * len(reps)),
                             squeeze=False, constrained_layout=True)
    image = None
    for row, rep in enumerate(reps):
        for col, ci in enumerate(shown):
            ax = axes[row, col]
            values = cka.isel({N.CHECKPOINT: int(ci)}).sel({N.REPRESENTATION: rep}).values
            image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", origin="lower")
            ax.set_title(f"step {_steps(res)[ci]} · {rep}", fontsize=9)
            ax.set_xlabel("layer", fontsize=8)
            ax.set_ylabel("layer", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="linear CKA")
    return fig


def convergence(res: xr.Dataset) -> Any:
    """CKA to the reference against step, one line per layer, one panel per representation."""
    if N.CKA_CHECKPOINTS not in res:
        return None
    cka = res[N.CKA_CHECKPOINTS]
    reps = [str(r) for r in cka[N.REPRESENTATION].values]
    steps, layers = _steps(res), res[N.LAYER].values
    fig, axes = plt.subplots(1, len(reps), figsize=(4.2 * len(reps) + 1, 3.4), squeeze=False, constrained_layout=True)
    colors = plt.cm.viridis(np.linspace(0, 1, len(layers)))
    for ax, rep in zip(axes[0], reps, strict=True):
        values = cka.sel({N.REPRESENTATION: rep}).values  # (checkpoint, layer)
        for li, layer in enumerate(layers):
            ax.plot(steps, values[:, li], marker="o", ms=3, color=colors[li], label=f"layer {layer}")
        ax.set_title(f"{rep}: CKA to step {res.attrs.get(N.CKA_REFERENCE, '?')}", fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("linear CKA to the reference")
        ax.set_ylim(-0.02, 1.02)
    axes[0, -1].legend(fontsize=7, loc="lower right", ncol=2)
    return fig


def updates_over_training(res: xr.Dataset) -> Any:
    """Update norm and the tangent vs PCA share of the updates against step, one line per layer."""
    if N.UPDATE_NORM not in res and N.UPDATE_PCA_ENERGY not in res:
        return None
    steps, layers = _steps(res), res[N.LAYER].values
    colors = plt.cm.viridis(np.linspace(0, 1, len(layers)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    if N.UPDATE_NORM in res:
        for li, layer in enumerate(layers):
            left.plot(steps, res[N.UPDATE_NORM].values[:, li], marker="o", ms=3, color=colors[li], label=f"layer {layer}")
        left.set_ylabel("mean ‖h_(k+1) − h_k‖")
        left.legend(fontsize=7, ncol=2)
    left.set_xlabel("training step k")
    for name, style in ((N.UPDATE_TANGENT_ENERGY, "-"), (N.UPDATE_PCA_ENERGY, "--")):
        if name in res:
            for li in range(len(layers)):
                right.plot(steps, res[name].values[:, li], ls=style, marker="o", ms=3, color=colors[li])
    iso = res.attrs.get("update_isotropic_expectation")
    if iso is not None:
        right.axhline(float(iso), color="black", ls=":", lw=1.2, label=f"r/D = {float(iso):.3g}")
    right.plot([], [], "k-", label="tangent Q_T")
    right.plot([], [], "k--", label="PCA Q_P")
    right.set_xlabel("training step k")
    right.set_ylabel("share of Σ‖update‖² in the subspace")
    right.set_ylim(0, 1)
    right.legend(fontsize=7)
    return fig
