"""Matplotlib figures of a results dataset (SPEC section 2).

Each figure function returns a Figure, or None when the metrics it needs are absent: a figure
is skipped, never drawn from placeholders. Figures are sized for a ~1200 px wide page.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.ticker import MaxNLocator

from tgo_analysis import names as N
from tgo_analysis.report.sections import Section, register

SPECTRAL = (
    N.EFFECTIVE_RANK,
    N.PARTICIPATION_RATIO,
    N.SPECTRAL_ENTROPY,
    N.SPECTRAL_FLATNESS,
    N.TOP1_SHARE,
    N.COSINE_ANISOTROPY,
)
LABELS = {
    N.ALPHA: "alpha (power-law exponent)",
    N.EFFECTIVE_RANK: "effective rank (dimensions)",
    N.PARTICIPATION_RATIO: "participation ratio (dimensions)",
    N.SPECTRAL_ENTROPY: "spectral entropy H / log m",
    N.SPECTRAL_FLATNESS: "spectral flatness (geo / arith mean)",
    N.TOP1_SHARE: "top-1 share λ₁ / Σλ",
    N.COSINE_ANISOTROPY: "mean pairwise cosine similarity",
    N.INTRINSIC_DIMENSION: "intrinsic dimension (TwoNN)",
    N.MEAN_TOKEN_CORRELATION: "mean token correlation (Pearson r)",
}
LOG_SCALE = {N.SPECTRAL_FLATNESS}
CLS_VIEW, PATCH_VIEW = "CLS token", "mean patch token"
LAYER_AXIS = "layer (0 = embedding output)"
STEP_AXIS = "training step (symlog scale)"
MIN_FIT_R2 = 0.9  # a power-law fit below this R² is marked "poor fit" in every figure, never read as alpha
POOR_FIT = f"R² < {MIN_FIT_R2}: poor power-law fit"


def is_image(res: xr.Dataset) -> bool:
    """Whether the results come from an image store (patch tokens) rather than text positions."""
    if N.TOKEN not in res.sizes:  # pooled-only results: images have per-token metrics beside them
        return False
    return bool((token_kinds(res) == "patch").any())  # no token_kind coord: the timm ViT layout


def layer_axis(ax: Any) -> None:
    """A layer x axis: integer ticks only, the shared label."""
    ax.set_xlabel(LAYER_AXIS)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def step_axis(ax: Any, steps: Any) -> None:
    """A training-step x axis: symlog (step 0 is the initialisation), starting at 0, not below it."""
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel(STEP_AXIS)
    last = float(np.max(steps)) if np.size(steps) else 1.0
    ax.set_xlim(0, max(last * 1.3, 1.5))


def fit_label(alpha: float, r2: float | None) -> str:
    """'alpha = 1.23 (R² 0.98)', with the poor-fit mark below MIN_FIT_R2."""
    if r2 is None or not np.isfinite(r2):
        return f"alpha = {alpha:.2f}"
    mark = f", {POOR_FIT}" if r2 < MIN_FIT_R2 else ""
    return f"alpha = {alpha:.2f} (R² {r2:.2f}{mark})"


def mark_poor_fits(ax: Any, x: np.ndarray, values: np.ndarray, r2: np.ndarray | None) -> bool:
    """Ring the points whose alpha fit has R² < MIN_FIT_R2; True when any was ringed."""
    if r2 is None:
        return False
    poor = np.isfinite(values) & np.isfinite(r2) & (r2 < MIN_FIT_R2)
    if poor.any():
        ax.plot(np.asarray(x)[poor], np.asarray(values)[poor], "o", ms=9, mfc="none", mec="red", mew=1.2)
    return bool(poor.any())


def note_missing_first_layer(ax: Any, res: xr.Dataset, data: xr.DataArray) -> None:
    """Say why a line starts after layer 0 (all NaN there: e.g. CLS is one learned vector for every image)."""
    first = np.asarray(data.isel(layer=0).values, dtype=float)
    if res.sizes[N.LAYER] > 1 and not np.isfinite(first).any():
        layers = res[N.LAYER].values
        ax.set_xlim(layers[0] - 0.3, layers[-1] + 0.3)  # layer 0 stays on the axis, empty, and says why
        ax.text(0.01, 0.02, "layer 0: no value (every sample identical, zero variance)",
                transform=ax.transAxes, fontsize=7, color="#555")


NO_VALUE_WHY = "all NaN: zero variance"


def note(ax: Any, text: str, where: str = "bottom") -> None:
    """A small grey note inside a panel: why something is not drawn (the figure checker asks for one)."""
    y, va = (0.02, "bottom") if where == "bottom" else (0.98, "top")
    ax.text(0.01, y, text, transform=ax.transAxes, fontsize=7, color="#555", va=va, wrap=True)


def plot_series(ax: Any, x: Any, series: list[tuple[str, Any, Any]], style: str = "o-",
                why: str = NO_VALUE_WHY, **kwargs: Any) -> list[str]:
    """Plot each (label, values, colour) that has a finite point; the others are named in a panel note
    (an all-NaN line would be a legend entry with nothing drawn). Returns the labels left out."""
    left = []
    for label, values, color in series:
        values = np.asarray(values, dtype=float)
        if not np.isfinite(values).any():
            left.append(label)
            continue
        ax.plot(x, values, style, ms=kwargs.pop("ms", 3), color=color, label=label, **kwargs)
    if left:
        note(ax, f"{', '.join(left)}:\nno value ({why})")  # two short lines: a narrow panel's note stays inside it
    return left


def token_kinds(res: xr.Dataset) -> np.ndarray:
    """Kind of each token; without the coordinate, token 0 is taken as CLS (timm ViT layout)."""
    if "token_kind" in res.coords:
        return np.array([str(k) for k in res["token_kind"].values])
    kinds = np.full(res.sizes[N.TOKEN], "patch", dtype=object)
    kinds[0] = "cls"
    return kinds


def token_views(res: xr.Dataset, var: str) -> dict[str, xr.DataArray]:
    """The CLS token and the mean over patch tokens of a (checkpoint, layer, token) variable."""
    kinds = token_kinds(res)
    views = {}
    if (kinds == "cls").any():
        views[CLS_VIEW] = res[var].isel(token=int(np.flatnonzero(kinds == "cls")[0]))
    if (kinds == "patch").any():
        patches = res[var].isel(token=np.flatnonzero(kinds == "patch"))
        views[PATCH_VIEW] = patches.mean("token", skipna=True)
    return views


def _colors(cmap: str, n: int) -> list:
    return [plt.get_cmap(cmap)(v) for v in np.linspace(0.05, 0.9, n)]


def _lines_per_checkpoint(ax: Any, res: xr.Dataset, data: xr.DataArray, ylabel: str) -> None:
    """One line per checkpoint (viridis: dark = early, yellow = late) of a (checkpoint, layer) quantity."""
    colors = _colors("viridis", res.sizes[N.CHECKPOINT])
    plot_series(ax, res[N.LAYER].values, [(f"step {int(step)}", data.isel(checkpoint=ci).values, colors[ci])
                                          for ci, step in enumerate(res[N.CHECKPOINT].values)])
    layer_axis(ax)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _lines_per_layer(ax: Any, res: xr.Dataset, data: xr.DataArray, ylabel: str) -> None:
    """One line per layer (plasma: dark = early layer) of a (checkpoint, layer) quantity against step."""
    colors = _colors("plasma", res.sizes[N.LAYER])
    plot_series(ax, res[N.CHECKPOINT].values, [(f"layer {int(layer)}", data.isel(layer=li).values, colors[li])
                                               for li, layer in enumerate(res[N.LAYER].values)])
    step_axis(ax, res[N.CHECKPOINT].values)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _legend_right(fig: Any, ax: Any, title: str) -> None:
    """One legend for a whole figure, outside the panels: the entries of ``ax`` (a line left out of it
    for want of values is taken from the other panels, and is named in a note where it is missing)."""
    handles, labels = ax.get_legend_handles_labels()
    for other in fig.axes:
        for handle, label in zip(*other.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="outside right upper", title=title, fontsize=8)


def alpha_trajectories(res: xr.Dataset) -> Any:
    """Alpha across layers: CLS, mean patch, all tokens, per cluster (Joseph et al. Fig. 1A).

    Points whose fit has R² < MIN_FIT_R2 (the view's own R²: the token's, the mean over patch
    tokens, the all-token fit's) are ringed in red."""
    if N.ALPHA not in res:
        return None
    r2_views = token_views(res, N.ALPHA_R2) if N.ALPHA_R2 in res else {}
    panels = [(title, data, r2_views.get(title)) for title, data in token_views(res, N.ALPHA).items()]
    if N.all_tokens(N.ALPHA) in res:
        panels.append(("all tokens concatenated", res[N.all_tokens(N.ALPHA)], res.get(N.all_tokens(N.ALPHA_R2))))
    has_clusters = N.ALPHA_CLUSTER in res
    count = len(panels) + has_clusters
    ncols = 2 if count > 1 else 1
    nrows = -(-count // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(11, 3.6 * nrows), squeeze=False, layout="constrained"
    )
    flat = axes.ravel()
    poor = False
    for ax, (title, data, r2) in zip(flat, panels, strict=False):
        _lines_per_checkpoint(ax, res, data, LABELS[N.ALPHA])
        for ci in range(res.sizes[N.CHECKPOINT]):
            fit = None if r2 is None else r2.isel(checkpoint=ci).values
            poor |= mark_poor_fits(ax, res[N.LAYER].values, data.isel(checkpoint=ci).values, fit)
        note_missing_first_layer(ax, res, data)
        ax.set_title(title)
    handles, labels = flat[0].get_legend_handles_labels()
    if poor:
        handles.append(plt.Line2D([], [], ls="none", marker="o", ms=8, mfc="none", mec="red"))
        labels.append(POOR_FIT)
    fig.legend(handles, labels, loc="outside right upper", title="checkpoint", fontsize=8)
    if has_clusters:
        _cluster_alpha_lines(flat[len(panels)], res)
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig


def _cluster_alpha_lines(ax: Any, res: xr.Dataset) -> None:
    """Mean alpha across layers of each cluster's tokens, at the last checkpoint."""
    labels = res[N.ALPHA_CLUSTER].values
    last = res[N.ALPHA].isel(checkpoint=-1)
    for c in sorted(set(labels[labels >= 0].tolist())):
        members = np.flatnonzero(labels == c)
        mean = last.isel(token=members).mean("token").values
        ax.plot(res[N.LAYER].values, mean, "o-", ms=3, color=plt.get_cmap("tab10")(c % 10),
                label=f"cluster {c} ({members.size} tokens)")
    ax.set_title(f"alpha clusters (mean of members), step {int(res[N.CHECKPOINT].values[-1])}")
    layer_axis(ax)
    ax.set_ylabel(LABELS[N.ALPHA])
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def cluster_grid(res: xr.Dataset) -> Any:
    """Alpha-trajectory clusters drawn on the patch grid (Joseph et al. Fig. 1C)."""
    from matplotlib.colors import ListedColormap

    from tgo_analysis.kernels.clustering import clusters_on_grid

    if N.ALPHA_CLUSTER not in res or "token_row" not in res.coords:
        return None
    grid = clusters_on_grid(
        res[N.ALPHA_CLUSTER].values, res["token_row"].values, res["token_col"].values
    )
    if grid.size == 0:
        return None
    n = int(max(grid.max(), 0)) + 1
    colors = ["#d9d9d9"] + [plt.get_cmap("tab10")(c % 10) for c in range(n)]
    fig, ax = plt.subplots(figsize=(5.2, 4.2), layout="constrained")
    image = ax.imshow(grid, cmap=ListedColormap(colors), vmin=-1.5, vmax=n - 0.5)
    bar = fig.colorbar(image, ax=ax, ticks=range(-1, n))
    bar.ax.set_yticklabels(["none", *[str(c) for c in range(n)]])
    bar.ax.set_title("cluster", fontsize=9)  # above the bar, not beyond the tick labels
    ax.set_xticks(range(grid.shape[1]))  # whole patches, not half-integer pixel ticks
    ax.set_yticks(range(grid.shape[0]))
    ax.set_title("alpha clusters on the patch grid")
    ax.set_xlabel("patch column")
    ax.set_ylabel("patch row")
    return fig


def token_correlation_profile(res: xr.Dataset) -> Any:
    """Mean inter-token correlation per layer, one line per checkpoint (Fig. 2)."""
    if N.MEAN_TOKEN_CORRELATION not in res:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.0), layout="constrained")
    _lines_per_checkpoint(ax, res, res[N.MEAN_TOKEN_CORRELATION], LABELS[N.MEAN_TOKEN_CORRELATION])
    ax.set_title("mean of the strict lower triangle of the token correlation matrix")
    _legend_right(fig, ax, "checkpoint")
    return fig


def correlation_matrices(res: xr.Dataset, n_layers: int = 3) -> Any:
    """Token x token Pearson matrices at the last checkpoint for first, middle and last layers."""
    if N.TOKEN_CORRELATION not in res:
        return None
    layers = sorted(set(np.linspace(0, res.sizes[N.LAYER] - 1, n_layers).round().astype(int)))
    fig, axes = plt.subplots(
        1, len(layers), figsize=(3.6 * len(layers) + 1, 3.8), squeeze=False, layout="constrained"
    )
    step = int(res[N.CHECKPOINT].values[-1])
    for ax, li in zip(axes[0], layers, strict=True):
        matrix = res[N.TOKEN_CORRELATION].isel(checkpoint=-1, layer=li).values
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        off = matrix[~np.eye(matrix.shape[0], dtype=bool)] if matrix.ndim == 2 else matrix
        span = (f"r {np.nanmin(off):.2f} to {np.nanmax(off):.2f}" if np.isfinite(off).any() else "no value")
        ax.set_title(f"layer {int(res[N.LAYER].values[li])}, step {step}\n{span} off the diagonal", fontsize=9)
        ax.set_xlabel("token (0 = CLS)" if is_image(res) else "position in the sequence")
    axes[0][0].set_ylabel("token" if is_image(res) else "position")
    fig.colorbar(image, ax=axes[0].tolist(), label="Pearson r", shrink=0.9)
    return fig


def metrics_over_training(res: xr.Dataset, view: str) -> Any:
    """Each spectral metric against training step, one line per layer, for one token view."""
    present = [m for m in SPECTRAL if m in res]
    if not present or res.sizes[N.CHECKPOINT] < 2 or view not in token_views(res, present[0]):
        return None
    ncols = 3
    nrows = -(-len(present) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(12, 3.3 * nrows), squeeze=False, layout="constrained"
    )
    for ax, metric in zip(axes.ravel(), present, strict=False):
        _lines_per_layer(ax, res, token_views(res, metric)[view], LABELS[metric])
        ax.set_title(metric)
        if metric in LOG_SCALE:
            ax.set_yscale("log")
    for ax in axes.ravel()[len(present) :]:
        ax.set_visible(False)
    fig.suptitle(view, fontsize=12, fontweight="bold")
    _legend_right(fig, axes[0][0], "layer")
    return fig


def anisotropy_profiles(res: xr.Dataset) -> Any:
    """Top-1 share and cosine anisotropy across layers per checkpoint (Razzhigaev et al.)."""
    present = [m for m in (N.TOP1_SHARE, N.COSINE_ANISOTROPY) if m in res]
    if not present:
        return None
    fig, axes = plt.subplots(
        1, len(present), figsize=(5.2 * len(present) + 1.5, 3.8), squeeze=False, layout="constrained"
    )
    for ax, metric in zip(axes[0], present, strict=True):
        _lines_per_checkpoint(ax, res, res[metric].mean("token", skipna=True), LABELS[metric])
        ax.set_title(f"{metric}, mean over tokens")
    _legend_right(fig, axes[0][0], "checkpoint")
    return fig


def intrinsic_dimension(res: xr.Dataset) -> Any:
    """TwoNN intrinsic dimension against training step, one line per layer."""
    if N.INTRINSIC_DIMENSION not in res or res.sizes[N.CHECKPOINT] < 2:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.0), layout="constrained")
    _lines_per_layer(ax, res, res[N.INTRINSIC_DIMENSION], LABELS[N.INTRINSIC_DIMENSION])
    ax.set_title("intrinsic dimension of all tokens concatenated")
    _legend_right(fig, ax, "layer")
    return fig


def nonzero_eigenvalues(eigs: np.ndarray, n_features: int | None = None) -> np.ndarray:
    """The eigenvalues the alpha fit counts (``kernels.metrics.nonzero_mask``: λ > λ₁ · D · eps), in rank
    order; the rest are numerical zeros (rank beyond the sample count), not part of the spectrum."""
    from tgo_analysis.kernels.metrics import nonzero_mask

    eigs = np.asarray(eigs, dtype=np.float64)
    eigs = eigs[np.isfinite(eigs)]
    return eigs[nonzero_mask(eigs, n_features or eigs.size)]


def fit_ranks(eigs: np.ndarray, fit_range: tuple[int, int]) -> tuple[int, int]:
    """The ranks the fit used: fit_range with the upper rank clipped to the nonzero count - 10."""
    positive = int(np.sum(np.isfinite(eigs) & (np.asarray(eigs) > 0)))
    return int(fit_range[0]), min(int(fit_range[1]), positive - 10)


def alpha_fit_line(eigs: np.ndarray, alpha: float, fit_range: tuple[int, int]) -> tuple:
    """Ranks and values of the fitted power law λ = e^b · i^-alpha over the fit ranks.

    ``eigs``: the nonzero eigenvalues (``nonzero_eigenvalues``), as the fit saw them; numerical zeros
    (1e-17 where rank exceeds the samples) would pull the intercept decades below the points.
    The results store alpha but not the intercept b; with the slope fixed, the weighted
    (1/i) least-squares intercept is the weighted mean of log λ_i + alpha · log i.
    """
    eigs = np.asarray(eigs, dtype=np.float64)
    lo, hi = fit_ranks(eigs, fit_range)
    if not np.isfinite(alpha) or hi < lo:
        return np.zeros(0), np.zeros(0)
    ranks = np.arange(lo, hi + 1, dtype=np.float64)
    weights = 1.0 / ranks
    intercept = np.sum(weights * (np.log(eigs[lo - 1 : hi]) + alpha * np.log(ranks))) / weights.sum()
    return ranks, np.exp(intercept) * ranks**-alpha


def n_features(res: xr.Dataset) -> int | None:
    """D of the analysed activations (the nonzero threshold's), from tgo_config's shape."""
    import json

    config = res.attrs.get("tgo_config")
    config = json.loads(config) if isinstance(config, str) else (config or {})
    shape = config.get("shape") if isinstance(config, dict) else None
    return int(shape[-1]) if isinstance(shape, list) and shape else None


def eigenspectra(
    res: xr.Dataset, token: int | None = None, step: int | None = None, layers: list[int] | None = None
) -> Any:
    """Eigenspectra on log-log axes with the stored alpha's fit line, for one (checkpoint, token).

    Defaults: the last checkpoint, the first token for images (CLS) and the middle position for
    text (the first position of a decoder is an outlier: massive activations, one token), and the
    middle layer with the first and last layers for comparison.
    """
    if N.EIGENVALUES not in res:
        return None
    fit_range = tuple(int(v) for v in res.attrs.get("alpha_fit_range", (11, 100)))
    if token is None:
        tokens = res[N.TOKEN].values
        token = int(tokens[0] if is_image(res) else tokens[len(tokens) // 2])
    token = int(token)
    step = int(res[N.CHECKPOINT].values[-1]) if step is None else int(step)
    all_layers = [int(v) for v in res[N.LAYER].values]
    if layers is None:
        layers = sorted({all_layers[0], all_layers[len(all_layers) // 2], all_layers[-1]})
    colors = _colors("plasma", len(all_layers))
    fig, ax = plt.subplots(figsize=(8.0, 4.8), layout="constrained")
    spectra = {layer: nonzero_eigenvalues(res[N.EIGENVALUES].sel(checkpoint=step, layer=layer, token=token).values,
                                          n_features(res)) for layer in layers}
    missing = []
    for layer, eigs in spectra.items():
        if eigs.size == 0:
            missing.append(f"layer {layer}")
            continue
        color = colors[all_layers.index(layer)]
        ax.loglog(np.arange(1, eigs.size + 1), eigs, ".", ms=3, color=color)
        where = {"checkpoint": step, "layer": layer, "token": token}
        alpha = float(res[N.ALPHA].sel(where)) if N.ALPHA in res else np.nan
        r2 = float(res[N.ALPHA_R2].sel(where)) if N.ALPHA_R2 in res else None
        line_ranks, line = alpha_fit_line(eigs, alpha, fit_range)
        if line.size:
            draw_fit(ax, line_ranks, line, color, f"layer {layer}: {fit_label(alpha, r2)}", r2)
        else:
            missing.append(f"layer {layer} (too few nonzero eigenvalues to fit)")
    if missing:
        note(ax, f"no alpha: {', '.join(missing)} (no eigenvalue above zero: zero variance)"
             if all("too few" not in m for m in missing) else f"no alpha: {', '.join(missing)}", where="top")
    what = f"token {token}" + (" (CLS)" if token_kinds(res)[list(res[N.TOKEN].values).index(token)] == "cls" else "")
    if not is_image(res):
        what = f"position {token}"
    drawn = [eigs for eigs in spectra.values() if eigs.size]
    finish_spectrum_axes(ax, fit_range, f"covariance eigenspectrum of {what}, step {step}",
                         "eigenvalue λᵢ (activation units²), nonzero only", drawn)
    return fig


def draw_fit(ax: Any, ranks: np.ndarray, line: np.ndarray, color: Any, label: str, r2: float | None) -> None:
    """The fit line: solid, or thin and dotted when its R² is below MIN_FIT_R2 (a poor fit)."""
    poor = r2 is not None and np.isfinite(r2) and r2 < MIN_FIT_R2
    ax.loglog(ranks, line, ":" if poor else "-", lw=1.2 if poor else 2, color=color, label=label)


def finish_spectrum_axes(ax: Any, fit_range: tuple[int, int], title: str, ylabel: str,
                         spectra: list[np.ndarray] | None = None) -> None:
    """The shared look of an eigenspectrum panel: the ranks the fits used shaded (the upper rank clipped
    to the longest nonzero spectrum - 10, as in the fit), labels, legend, grid."""
    lo, hi = int(fit_range[0]), int(fit_range[1])
    if spectra:
        hi = max(fit_ranks(eigs, fit_range)[1] for eigs in spectra)
    if hi >= lo:
        ax.axvspan(lo, hi, color="grey", alpha=0.12, label=f"fit ranks {lo}-{hi}")
    ax.set_title(title)
    ax.set_xlabel("rank i")
    ax.set_ylabel(ylabel)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")


def training_curve(training: dict | None) -> Any:
    """Held-out accuracy and/or held-out loss, and train loss when logged, of each saved checkpoint.

    Image runs log ``accuracy``; language runs log ``held_out_loss``; both log ``loss`` (the
    last training batch). Accuracy takes the left axis when present, losses the right one.
    ``beside``: {label: log} of other models trained alongside (the text demo's encoder), drawn
    with their held-out loss and, when logged, the unigram cross-entropy it must fall below.
    """
    if not training or not training.get("steps"):
        return None
    steps = training["steps"]
    fig, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")
    step_axis(ax, steps)
    ax.grid(alpha=0.3)
    loss_ax = ax
    if training.get("accuracy"):
        ax.plot(steps, training["accuracy"], "o-", label="held-out accuracy")
        ax.set_ylabel("held-out accuracy (fraction)")
        ax.set_ylim(0, 1)
        loss_ax = ax.twinx()
    series = [("held_out_loss", "o-", "tab:green", "held-out loss"),
              ("loss", "s--", "tab:red", "train loss (last batch)")]
    unlogged = []
    for key, style, colour, label in series:
        values = np.asarray(training.get(key) or [], dtype=float)
        if values.size and np.isfinite(values).any():
            loss_ax.plot(steps, values, style, color=colour, label=label)
            loss_ax.set_ylabel("cross-entropy loss (nats)")
            unlogged += [int(s) for s, v in zip(steps, values, strict=False) if not np.isfinite(v)]
    for i, (label, log) in enumerate(sorted((training.get("beside") or {}).items())):  # another model's run
        colour = plt.get_cmap("tab10")(i + 4)
        values = np.asarray(log.get("held_out_loss") or [], dtype=float)
        if values.size and np.isfinite(values).any():
            loss_ax.plot(log["steps"], values, "D-.", color=colour, label=f"held-out loss, {label}")
            loss_ax.set_ylabel("cross-entropy loss (nats)")
        if log.get("unigram_loss") is not None:  # what that model scores by ignoring context
            loss_ax.axhline(float(log["unigram_loss"]), color=colour, ls=":", lw=1,
                            label=f"unigram cross-entropy, {label}")
    if unlogged:
        note(ax, f"train loss: no point at step {', '.join(map(str, sorted(set(unlogged))))} "
                 "(no batch trained before it)")
    handles = ax.get_legend_handles_labels()[0]
    if loss_ax is not ax:
        handles += loss_ax.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="center left", fontsize=8)
    return fig


# ---- the sections of the page that every results store can have ---------------------------------

def _eigenspectra_caption(res: xr.Dataset) -> str:
    which = "the CLS token" if is_image(res) else "the middle position (not the first, an outlier in decoders)"
    return ("Covariance eigenvalues against rank on log-log axes for " + which + " by default (`tgo report "
            "--spectrum-token`), with the line of the stored alpha over the fit ranks and its R²; a fit "
            f"with R² below {MIN_FIT_R2} is dotted and marked poor: the spectrum is not a power law there.")


def _training_caption(res: xr.Dataset) -> str:
    measure = "Held-out accuracy" if is_image(res) else "Held-out loss (cross-entropy, nats)"
    return (f"{measure} and the train loss of the last batch, at each saved checkpoint (the initialisation, "
            "step 0, has no train batch).")


def _alpha_caption(res: xr.Dataset) -> str:
    text = ("Power-law exponent of each token's covariance spectrum per layer, one line per checkpoint "
            "(larger alpha = faster eigenvalue decay = fewer dominant directions); the last panel "
            "averages the tokens of each alpha-trajectory cluster (Joseph et al., Fig. 1A). Points "
            f"ringed in red have a fit R² below {MIN_FIT_R2}: not read as a power law.")
    if is_image(res):
        return text + " The CLS token has no value at layer 0, where it is the same learned vector for every image."
    return text + (" Per-position spectra use the sequences valid at each position; a position whose "
                   "spectrum cannot be fitted (too few samples, or a constant vector) has no value.")


_section = partial(Section, group="core")

register(
    _section("training", "Training", _training_caption, lambda r, o: training_curve(o.get("training"))),
    _section("alpha", "Alpha across layers", _alpha_caption, lambda r, o: alpha_trajectories(r)),
    _section("clusters", "Alpha clusters on the patch grid",
            "Tokens grouped by k-means of their alpha trajectory across layers (Fig. 1C); "
            "grey (none) = no cluster (a NaN alpha somewhere in the trajectory).",
            lambda r, o: cluster_grid(r)),
    _section("correlation", "Inter-token correlation",
            "Mean Pearson correlation between the flattened activations of two tokens, per layer "
            "(Fig. 2), one line per checkpoint.",
            lambda r, o: token_correlation_profile(r)),
    _section("correlation_matrices", "Token correlation matrices",
            "Token x token Pearson correlation at the last checkpoint, first, middle and last layers.",
            lambda r, o: correlation_matrices(r)),
    _section("training_dynamics_cls", "Spectral metrics over training: CLS token",
            "Each spectral metric of the CLS token against training step, one line per layer.",
            lambda r, o: metrics_over_training(r, CLS_VIEW)),
    _section("training_dynamics_patch", "Spectral metrics over training: patch tokens",
            "Each spectral metric averaged over the patch tokens, against training step, one line per layer.",
            lambda r, o: metrics_over_training(r, PATCH_VIEW)),
    _section("anisotropy", "Anisotropy across layers",
            "Top-1 eigenvalue share λ₁ / Σλ of each token's covariance (centred over samples) and the mean "
            "pairwise cosine similarity of its un-centred vectors, averaged over tokens, one line per checkpoint "
            "(Razzhigaev et al.).",
            lambda r, o: anisotropy_profiles(r)),
    _section("intrinsic_dimension", "Intrinsic dimension over training",
            "TwoNN estimate on all tokens concatenated, one line per layer.",
            lambda r, o: intrinsic_dimension(r)),
    _section("eigenspectra", "Eigenspectra with the alpha fit", _eigenspectra_caption,
            lambda r, o: eigenspectra(r, o.get("spectrum_token"), o.get("spectrum_step"))),
)

