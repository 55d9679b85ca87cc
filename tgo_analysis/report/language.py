"""Figures of the language section (SPEC 5): pooled anisotropy, intrinsic dimension, frequency.

Like ``figures``, each function returns a Figure or None when its metrics are absent. The
anisotropy profile can put several results side by side (``compare``: label -> results), for
Razzhigaev et al.'s encoder/decoder contrast, or one analysis with special and first positions
and one without.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.report import figures as F
from tgo_analysis.report.sections import Section, register
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
    sets = [(positions_label(res) if not compare else f"these results, {positions_label(res)}", res)]
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
            if row == 0:  # the column's results; the row's metric is on the y axis (and the legend rings the norm)
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
        F.plot_series(ax, bucket_centres(res), [(f"layer {int(res[N.LAYER].values[li])}",
                                                 res[metric].isel(checkpoint=-1, layer=li).values, colors[li])
                                                for li in shown], why="no position of the layer in any bucket")
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


def frequency_reading(res: xr.Dataset) -> str | None:
    """What the frequency figure shows at the last checkpoint, in words computed from the drawn numbers:
    where the distance to the pooled mean is largest and smallest across buckets, and the range of ρ."""
    parts = []
    step = int(res[N.CHECKPOINT].values[-1])
    if N.CENTROID_DISTANCE_BY_FREQUENCY in res:
        layers = res[N.LAYER].values
        li = len(layers) // 2
        values = np.asarray(res[N.CENTROID_DISTANCE_BY_FREQUENCY].isel(checkpoint=-1, layer=li).values, dtype=float)
        if np.isfinite(values).sum() >= 2:
            centres = bucket_centres(res)
            far, near = int(np.nanargmax(values)), int(np.nanargmin(values))
            parts.append(f"at layer {int(layers[li])} the positions farthest from the pooled mean are in the bucket "
                         f"of about {centres[far]:.3g} occurrences (mean distance {values[far]:.3g}), the nearest in "
                         f"the bucket of about {centres[near]:.3g} ({values[near]:.3g})")
    if N.FREQUENCY_CENTROID_SPEARMAN in res:
        rho = np.asarray(res[N.FREQUENCY_CENTROID_SPEARMAN].isel(checkpoint=-1).values, dtype=float)
        if np.isfinite(rho).any():
            layers = res[N.LAYER].values
            lo, hi = int(np.nanargmin(rho)), int(np.nanargmax(rho))
            sign = "negative" if np.nanmedian(rho) < 0 else "positive"
            parts.append(f"Spearman ρ runs from {rho[lo]:.2f} (layer {int(layers[lo])}) to {rho[hi]:.2f} (layer "
                         f"{int(layers[hi])}), {sign} in most layers ({'rarer' if sign == 'negative' else 'more frequent'}"
                         " tokens farther from the mean, on the whole)")
    if not parts:
        return None
    return f"Here, at step {step}: " + "; ".join(parts) + ". A rank correlation is monotone; the buckets show its shape."


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
    drawn, missing = [], []
    for layer in chosen:
        eigs = F.nonzero_eigenvalues(res[N.EIGENVALUES_POOLED].sel(checkpoint=step, layer=layer).values,
                                     F.n_features(res))
        if eigs.size == 0:
            missing.append(f"layer {layer}")
            continue
        drawn.append(eigs)
        color = colors[layers.index(layer)]
        alpha = float(res[alpha_name].sel(checkpoint=step, layer=layer)) if alpha_name in res else np.nan
        r2_name = N.pooled(N.ALPHA_R2)
        r2 = float(res[r2_name].sel(checkpoint=step, layer=layer)) if r2_name in res else None
        ax.loglog(np.arange(1, eigs.size + 1), eigs, ".", ms=3, color=color)
        ranks, line = F.alpha_fit_line(eigs, alpha, fit_range)
        if line.size:
            F.draw_fit(ax, ranks, line, color, f"layer {layer}: {F.fit_label(alpha, r2)}", r2)
        else:
            missing.append(f"layer {layer} (no fit)")
    if missing:
        F.note(ax, f"not drawn: {', '.join(missing)}", where="top")
    F.finish_spectrum_axes(ax, fit_range, f"pooled covariance eigenspectrum, step {step} ({positions_label(res)})",
                           "eigenvalue λᵢ, nonzero only", drawn)
    return fig


# ---- the language sections (SPEC 5), shown for results with any LANGUAGE_VARIABLES ------------------

def _pooled_anisotropy_caption(res: xr.Dataset) -> str:
    if F.is_image(res):
        return ("Top-1 eigenvalue share of the covariance of every token of every image (CLS and patches) "
                "pooled as points, and their mean pairwise cosine, one line per checkpoint; the language "
                "literature's anisotropy measure (Razzhigaev et al.) applied to a ViT's tokens.")
    return ("Top-1 eigenvalue share of the covariance of every valid position pooled as points, and "
            "their mean pairwise cosine, one line per checkpoint; one column per results set "
            "(Razzhigaev et al.: decoders peak in the middle layers, encoders stay flatter). Decoders "
            "put massive activations on the first position: the columns compare with and without it "
            "when both analyses are given (`tgo report --compare`; `tgo demo --text` does). A peak "
            "that survives leaving out first and special positions is a property of the token cloud; "
            "one that vanishes is those few massive positions, not anisotropy of the text. Ringed: "
            "the last hidden state, taken after the model's final norm, which rescales every vector "
            "(Razzhigaev et al.'s layers 0..L-1 leave it out; tgo report --without-final-norm does). "
            "λ₁ / Σλ says how much variance one direction holds, not which direction or why, and a "
            "change over layers is not by itself a change in what the model represents.")


def _frequency_caption(res: xr.Dataset) -> str:
    n = res.sizes[N.LAYER]
    per = ("one line per layer" if n <= MAX_LAYER_LINES else
           f"one line for each of {MAX_LAYER_LINES} of the {n} layers (evenly spaced)")
    return ("Pooled metrics over the positions of each log-spaced bucket of corpus token counts at "
            f"the last checkpoint, {per}; last panel: Spearman rho between log count and "
            "distance to the pooled mean per layer, one line per checkpoint. Top-1 share and effective rank come from the same number of positions in every bucket (the "
            "results' frequency_equal_count), so a difference between buckets is not their size; they still "
            "mix frequency with what frequent tokens are (function words, punctuation), so the curves support "
            "'frequent and rare positions differ here', not 'frequency causes it'. Mean norm and distance are "
            "means over the bucket (or a seeded subsample) and do not follow bucket size.")


def _pooled_spectra_caption(res: xr.Dataset) -> str:
    return ("Eigenvalues of the pooled covariance against rank on log-log axes with the line of the "
            "stored alpha_pooled and its R², first, middle and last layers; a fit with R² below "
            f"{F.MIN_FIT_R2} is dotted and marked poor (e.g. a spectrum that falls off a cliff inside the "
            "fit ranks) and is no evidence of a power law.")


# Shown only for results that have SPEC section 5 metrics (pooled positions, frequency).
_section = partial(Section, group="language", needs=LANGUAGE_VARIABLES)

register(
    _section("pooled_anisotropy", "Pooled anisotropy across layers", _pooled_anisotropy_caption,
            lambda r, o: pooled_anisotropy(r, o.get("compare"), o.get("final_norm", True))),
    _section("pooled_training", "Pooled intrinsic dimension and anisotropy over training",
            "TwoNN on a seeded subsample of pooled positions and the pooled top-1 share against "
            "training step, one line per layer (Razzhigaev et al.: intrinsic dimension rises early "
            "in training, then falls). The estimator is in the results' id_estimator attr (twonn, or "
            "microscope for LLM-Microscope's like-for-like numbers); the two differ by construction, so "
            "compare values only within one estimator.",
            lambda r, o: pooled_training_dynamics(r)),
    _section("frequency", "Geometry by token frequency", _frequency_caption,
            lambda r, o: frequency_profiles(r), frequency_reading),
    _section("pooled_eigenspectra", "Pooled eigenspectra", _pooled_spectra_caption,
            lambda r, o: pooled_eigenspectra(r, o.get("spectrum_step"))),
)

