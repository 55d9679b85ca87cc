"""Figures of the language section (SPEC 5): pooled anisotropy, intrinsic dimension, frequency.

Like ``figures``, each function returns a Figure or None when its metrics are absent. The
anisotropy profile can put several results side by side (``compare``: label -> results), for
Razzhigaev et al.'s encoder/decoder contrast, or one analysis with special and first positions
and one without.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.report import figures as F
from tgo_analysis.statistics.pooled import LAYERS_AFTER_FINAL_NORM

POOLED_LABELS = {
    N.TOP1_SHARE_POOLED: "top-1 share λ₁ / Σλ (pooled)",
    N.COSINE_ANISOTROPY_POOLED: "mean pairwise cosine (pooled)",
    N.INTRINSIC_DIMENSION_POOLED: "intrinsic dimension (TwoNN, pooled)",
}
FREQUENCY_LABELS = {
    N.TOP1_SHARE_BY_FREQUENCY: "top-1 share λ₁ / Σλ",
    N.EFFECTIVE_RANK_BY_FREQUENCY: "effective rank (dimensions)",
    N.MEAN_NORM_BY_FREQUENCY: "mean norm ‖x‖",
    N.CENTROID_DISTANCE_BY_FREQUENCY: "mean distance to the pooled mean",
}
MAX_LAYER_LINES = 8  # evenly spaced layers in the frequency panels: 30 lines are unreadable
LANGUAGE_VARIABLES = (*POOLED_LABELS, N.EIGENVALUES_POOLED, *FREQUENCY_LABELS, N.FREQUENCY_CENTROID_SPEARMAN)


def positions_label(res: xr.Dataset) -> str:
    """Which positions were pooled, from the result attrs, in a few words."""
    left = [what for key, what in (("pooled_exclude_special", "special"), ("pooled_exclude_first", "first"))
            if bool(res.attrs.get(key, False))]
    return "without " + " & ".join(left) + " positions" if left else "all valid positions"


def final_norm_layers(res: xr.Dataset) -> list[int]:
    """Layers of these results whose states follow the model's final norm (from the attrs)."""
    found = res.attrs.get(LAYERS_AFTER_FINAL_NORM) or []
    return [int(v) for v in found if int(v) in set(int(x) for x in res[N.LAYER].values)]


def without_final_norm(res: xr.Dataset) -> xr.Dataset:
    """The results without the layers taken after the final norm (Razzhigaev et al.: 0..L-1)."""
    drop = final_norm_layers(res)
    return res.drop_sel({N.LAYER: drop}) if drop else res


def pooled_anisotropy(res: xr.Dataset, compare: Mapping[str, xr.Dataset] | None = None,
                      final_norm: bool = True) -> Any:
    """Pooled anisotropy across layers, one line per checkpoint; one column per results set.

    The last hidden state of a decoder follows its final norm, which rescales every position
    and can move λ₁ / Σλ by itself: ``final_norm=False`` leaves that layer out (as Razzhigaev
    et al.'s layers 0..L-1 do); drawn, it is ringed and the title says so.
    """
    sets = [(f"these results, {positions_label(res)}", res)]
    sets += [(f"{label}, {positions_label(ds)}", ds) for label, ds in (compare or {}).items()]
    sets = [(label, ds if final_norm else without_final_norm(ds)) for label, ds in sets]
    sets = [(label, ds) for label, ds in sets if N.TOP1_SHARE_POOLED in ds]
    rows = [m for m in (N.TOP1_SHARE_POOLED, N.COSINE_ANISOTROPY_POOLED) if any(m in ds for _, ds in sets)]
    if not sets:
        return None
    fig, axes = plt.subplots(len(rows), len(sets), figsize=(4.8 * len(sets) + 1.5, 3.4 * len(rows)),
                             squeeze=False, sharey="row", layout="constrained")  # one scale: comparable
    for col, (label, ds) in enumerate(sets):
        for row, metric in enumerate(rows):
            ax = axes[row][col]
            if metric not in ds:
                ax.set_axis_off()
                continue
            F._lines_per_checkpoint(ax, ds, ds[metric], POOLED_LABELS[metric])
            normed = final_norm_layers(ds)
            if normed:
                values = ds[metric].sel({N.LAYER: normed}).isel(checkpoint=-1).values
                ax.plot(normed, values, "o", ms=9, mfc="none", mec="black", label="after the final norm")
            ax.set_title(label + (", ringed: after the final norm" if normed else ""), fontsize=9)
            ax.legend(fontsize=7)
    return fig


def pooled_training_dynamics(res: xr.Dataset) -> Any:
    """Pooled intrinsic dimension and anisotropy against training step, one line per layer."""
    present = [m for m in (N.INTRINSIC_DIMENSION_POOLED, N.TOP1_SHARE_POOLED) if m in res]
    if not present or res.sizes[N.CHECKPOINT] < 2:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(5.2 * len(present) + 1.5, 3.8), squeeze=False,
                             layout="constrained")
    for ax, metric in zip(axes[0], present, strict=True):
        F._lines_per_layer(ax, res, res[metric], POOLED_LABELS[metric])
        ax.set_title(f"{metric} ({positions_label(res)})", fontsize=9)
    F._legend_right(fig, axes[0][0], "layer")
    return fig


def bucket_centres(res: xr.Dataset) -> np.ndarray:
    """Geometric centre of each bucket's counts [low, high - 1], for a log axis."""
    low = res[N.FREQUENCY_LOW].values.astype(np.float64)
    high = res[N.FREQUENCY_HIGH].values.astype(np.float64)
    return np.sqrt(low * np.maximum(high - 1, low))


def frequency_profiles(res: xr.Dataset) -> Any:
    """Metrics against frequency bucket at the last checkpoint, one line per layer (at most
    MAX_LAYER_LINES, evenly spaced), and Spearman ρ (log count vs distance to the pooled mean)
    across layers, one line per checkpoint."""
    present = [m for m in FREQUENCY_LABELS if m in res]
    spearman = N.FREQUENCY_CENTROID_SPEARMAN in res
    if not present and not spearman:
        return None
    n = len(present) + int(spearman)
    ncols = min(n, 3)  # at most three panels a row: five in one row are unreadable
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols + 1.5, 3.5 * nrows), squeeze=False,
                             layout="constrained")
    flat = axes.ravel()
    colors = F._colors("plasma", res.sizes[N.LAYER])
    step = int(res[N.CHECKPOINT].values[-1])
    n_layers = res.sizes[N.LAYER]
    shown = np.unique(np.linspace(0, n_layers - 1, min(n_layers, MAX_LAYER_LINES)).round().astype(int))
    for ax, metric in zip(flat, present, strict=False):
        for li in shown:
            layer = res[N.LAYER].values[li]
            values = res[metric].isel(checkpoint=-1, layer=li).values
            ax.plot(bucket_centres(res), values, "o-", ms=3, color=colors[li], label=f"layer {int(layer)}")
        ax.set_xscale("log")
        ax.set_xlabel("token count in the corpus (bucket centre)")
        ax.set_ylabel(FREQUENCY_LABELS[metric])
        ax.set_title(f"{metric}, step {step}", fontsize=9)
        ax.grid(alpha=0.3)
    if present:
        F._legend_right(fig, flat[0], "layer (frequency panels)")
    if spearman:
        ax = flat[n - 1]
        F._lines_per_checkpoint(ax, res, res[N.FREQUENCY_CENTROID_SPEARMAN], "Spearman ρ")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title("log count vs distance to the pooled mean, per checkpoint", fontsize=9)
        ax.legend(fontsize=7, title="checkpoint", title_fontsize=7)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig


def spearman_summary(res: xr.Dataset) -> str:
    """What the stored Spearman ρ shows at the last checkpoint, in words (for the caption)."""
    if N.FREQUENCY_CENTROID_SPEARMAN not in res:
        return ""
    values = np.asarray(res[N.FREQUENCY_CENTROID_SPEARMAN].isel(checkpoint=-1).values, dtype=float)
    if not np.isfinite(values).any():
        return " Spearman rho is undefined at the last checkpoint."
    layers = res[N.LAYER].values
    lo, hi = int(np.nanargmin(values)), int(np.nanargmax(values))
    sign = ("frequent tokens lie closer to the pooled mean" if np.nanmedian(values) < 0 else
            "frequent tokens lie farther from the pooled mean")
    return (f" Here, at step {int(res[N.CHECKPOINT].values[-1])}, rho runs from {values[lo]:.2f} (layer "
            f"{int(layers[lo])}) to {values[hi]:.2f} (layer {int(layers[hi])}); in most layers {sign}.")


def pooled_eigenspectra(res: xr.Dataset, step: int | None = None) -> Any:
    """Pooled covariance eigenspectra (log-log) of the first, middle and last layers, with the
    stored alpha_pooled's fit line, at one checkpoint (default: the last)."""
    if N.EIGENVALUES_POOLED not in res:
        return None
    fit_range = tuple(int(v) for v in res.attrs.get("alpha_fit_range", (11, 100)))
    step = int(res[N.CHECKPOINT].values[-1]) if step is None else int(step)
    layers = [int(v) for v in res[N.LAYER].values]
    chosen = sorted({layers[0], layers[len(layers) // 2], layers[-1]})
    colors = F._colors("plasma", len(layers))
    alpha_name = N.pooled(N.ALPHA)
    fig, ax = plt.subplots(figsize=(8.0, 4.8), layout="constrained")
    for layer in chosen:
        eigs = res[N.EIGENVALUES_POOLED].sel(checkpoint=step, layer=layer).values
        eigs = eigs[np.isfinite(eigs)]
        positive = eigs > 0
        color = colors[layers.index(layer)]
        alpha = float(res[alpha_name].sel(checkpoint=step, layer=layer)) if alpha_name in res else np.nan
        r2_name = N.pooled(N.ALPHA_R2)
        r2 = float(res[r2_name].sel(checkpoint=step, layer=layer)) if r2_name in res else None
        ax.loglog(np.arange(1, eigs.size + 1)[positive], eigs[positive], ".", ms=3, color=color)
        ranks, line = F.alpha_fit_line(eigs, alpha, fit_range)
        if line.size:
            F.draw_fit(ax, ranks, line, color, f"layer {layer}: {F.fit_label(alpha, r2)}", r2)
        else:
            ax.plot([], [], ".", color=color, label=f"layer {layer}: alpha n/a (no fit)")
    F.finish_spectrum_axes(ax, fit_range, f"pooled covariance eigenspectrum, step {step} ({positions_label(res)})",
                           "eigenvalue λᵢ")
    return fig
