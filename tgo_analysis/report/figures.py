"""Matplotlib figures of a results dataset (SPEC section 2). Each returns a Figure or None when
the metrics it needs are absent: a figure is skipped, never drawn from placeholders."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.metrics import fit_alpha

SPECTRAL = (N.EFFECTIVE_RANK, N.PARTICIPATION_RATIO, N.SPECTRAL_ENTROPY, N.SPECTRAL_FLATNESS, N.TOP1_SHARE,
            N.COSINE_ANISOTROPY)
LABELS = {
    N.ALPHA: "alpha (power-law exponent)", N.EFFECTIVE_RANK: "effective rank", N.PARTICIPATION_RATIO:
    "participation ratio", N.SPECTRAL_ENTROPY: "spectral entropy (normalised)", N.SPECTRAL_FLATNESS:
    "spectral flatness", N.TOP1_SHARE: "top-1 share λ₁/Σλ", N.COSINE_ANISOTROPY: "mean cosine similarity",
    N.INTRINSIC_DIMENSION: "intrinsic dimension (TwoNN)", N.MEAN_TOKEN_CORRELATION: "mean token correlation r",
}


def _kinds(res: xr.Dataset) -> np.ndarray:
    if "token_kind" in res.coords:
        return np.array([str(k) for k in res["token_kind"].values])
    kinds = np.full(res.sizes[N.TOKEN], "patch", dtype=object)
    kinds[0] = "cls"
    return kinds


def token_views(res: xr.Dataset, var: str) -> dict[str, xr.DataArray]:
    """The CLS token and the mean over patch tokens of a (checkpoint, layer, token) variable."""
    kinds = _kinds(res)
    views = {}
    if (kinds == "cls").any():
        views["CLS token"] = res[var].isel(token=int(np.flatnonzero(kinds == "cls")[0]))
    if (kinds == "patch").any():
        views["mean patch token"] = res[var].isel(token=np.flatnonzero(kinds == "patch")).mean("token", skipna=True)
    return views


def _step_colors(res: xr.Dataset) -> list:
    n = res.sizes[N.CHECKPOINT]
    return [plt.cm.viridis(v) for v in np.linspace(0.05, 0.95, n)]


def _layer_colors(res: xr.Dataset) -> list:
    n = res.sizes[N.LAYER]
    return [plt.cm.plasma(v) for v in np.linspace(0.05, 0.9, n)]


def _lines_per_checkpoint(ax: Any, res: xr.Dataset, data: xr.DataArray, ylabel: str, title: str) -> None:
    """One line per checkpoint (colour = training step) of a (checkpoint, layer) quantity."""
    colors = _step_colors(res)
    for ci, step in enumerate(res[N.CHECKPOINT].values):
        ax.plot(res[N.LAYER].values, data.isel(checkpoint=ci).values, "o-", ms=3, color=colors[ci],
                label=f"step {int(step)}")
    ax.set_title(title)
    ax.set_xlabel("layer (0 = embedding)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _lines_per_layer(ax: Any, res: xr.Dataset, data: xr.DataArray, ylabel: str, title: str) -> None:
    """One line per layer of a (checkpoint, layer) quantity against training step."""
    colors = _layer_colors(res)
    for li, layer in enumerate(res[N.LAYER].values):
        ax.plot(res[N.CHECKPOINT].values, data.isel(layer=li).values, "o-", ms=2, color=colors[li],
                label=f"layer {int(layer)}")
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    _step_axis(ax, res)
    ax.grid(alpha=0.3)


def _step_axis(ax: Any, res: xr.Dataset) -> None:
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("training step (symlog)")


def alpha_trajectories(res: xr.Dataset) -> Any:
    """Alpha across layers: CLS, mean patch, all tokens, per cluster (Joseph et al. Fig. 1A)."""
    if N.ALPHA not in res:
        return None
    panels: list[tuple[str, Any]] = [(k, v) for k, v in token_views(res, N.ALPHA).items()]
    if N.all_tokens(N.ALPHA) in res:
        panels.append(("all tokens concatenated", res[N.all_tokens(N.ALPHA)]))
    has_clusters = N.ALPHA_CLUSTER in res
    fig, axes = plt.subplots(1, len(panels) + has_clusters, figsize=(4.2 * (len(panels) + has_clusters), 3.6),
                             squeeze=False)
    layers = res[N.LAYER].values
    for ax, (title, data) in zip(axes[0], panels, strict=False):
        _lines_per_checkpoint(ax, res, data, LABELS[N.ALPHA], title)
    axes[0][0].legend(fontsize=7, ncol=1)
    if has_clusters:
        ax = axes[0][-1]
        labels = res[N.ALPHA_CLUSTER].values
        last = res[N.ALPHA].isel(checkpoint=-1)
        for c in sorted(set(labels[labels >= 0])):
            members = np.flatnonzero(labels == c)
            ax.plot(layers, last.isel(token=members).mean("token").values, "o-", ms=3,
                    color=plt.cm.tab10(c), label=f"cluster {c} ({members.size} tokens)")
        ax.set_title(f"alpha clusters, step {int(res[N.CHECKPOINT].values[-1])}")
        ax.set_xlabel("layer (0 = embedding)")
        ax.set_ylabel(LABELS[N.ALPHA])
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def cluster_grid(res: xr.Dataset) -> Any:
    """Alpha-trajectory clusters drawn on the patch grid (Joseph et al. Fig. 1C)."""
    from tgo_analysis.clustering import clusters_on_grid

    if N.ALPHA_CLUSTER not in res or "token_row" not in res.coords:
        return None
    grid = clusters_on_grid(res[N.ALPHA_CLUSTER].values, res["token_row"].values, res["token_col"].values)
    if grid.size == 0:
        return None
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    n = int(grid.max()) + 1
    image = ax.imshow(np.ma.masked_less(grid, 0), cmap=plt.get_cmap("tab10", max(n, 1)), vmin=-0.5, vmax=n - 0.5)
    fig.colorbar(image, ax=ax, ticks=range(n), label="alpha cluster")
    ax.set_title("alpha clusters on the patch grid")
    ax.set_xlabel("patch column")
    ax.set_ylabel("patch row")
    fig.tight_layout()
    return fig


def token_correlation_profile(res: xr.Dataset) -> Any:
    """Mean inter-token correlation per layer, one line per checkpoint (Fig. 2)."""
    if N.MEAN_TOKEN_CORRELATION not in res:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    _lines_per_checkpoint(ax, res, res[N.MEAN_TOKEN_CORRELATION], LABELS[N.MEAN_TOKEN_CORRELATION],
                          "mean inter-token correlation")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def correlation_matrices(res: xr.Dataset, n_layers: int = 3) -> Any:
    """Token x token Pearson matrices at the last checkpoint for first, middle and last layers."""
    if N.TOKEN_CORRELATION not in res:
        return None
    layers = sorted(set(np.linspace(0, res.sizes[N.LAYER] - 1, n_layers).round().astype(int)))
    fig, axes = plt.subplots(1, len(layers), figsize=(4.0 * len(layers), 3.6), squeeze=False)
    for ax, li in zip(axes[0], layers, strict=True):
        image = ax.imshow(res[N.TOKEN_CORRELATION].isel(checkpoint=-1, layer=li).values, cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_title(f"layer {int(res[N.LAYER].values[li])}, step {int(res[N.CHECKPOINT].values[-1])}")
        ax.set_xlabel("token")
        ax.set_ylabel("token")
    fig.colorbar(image, ax=axes[0].tolist(), label="Pearson r")
    return fig


def metrics_over_training(res: xr.Dataset) -> Any:
    """Each spectral metric against training step, one line per layer, CLS and mean patch."""
    present = [m for m in SPECTRAL if m in res]
    if not present or res.sizes[N.CHECKPOINT] < 2:
        return None
    views = list(token_views(res, present[0]))
    fig, axes = plt.subplots(len(views), len(present), figsize=(3.3 * len(present), 3.0 * len(views)), squeeze=False)
    for row, view in enumerate(views):
        for col, metric in enumerate(present):
            _lines_per_layer(axes[row][col], res, token_views(res, metric)[view], LABELS[metric], f"{view}: {metric}")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def anisotropy_profiles(res: xr.Dataset) -> Any:
    """Top-1 share and cosine anisotropy across layers per checkpoint (Razzhigaev et al.)."""
    present = [m for m in (N.TOP1_SHARE, N.COSINE_ANISOTROPY) if m in res]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(5.2 * len(present), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], present, strict=True):
        _lines_per_checkpoint(ax, res, res[metric].mean("token", skipna=True), LABELS[metric],
                              f"{metric} (mean over tokens)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def intrinsic_dimension(res: xr.Dataset) -> Any:
    """TwoNN intrinsic dimension against training step, one line per layer."""
    if N.INTRINSIC_DIMENSION not in res:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    _lines_per_layer(ax, res, res[N.INTRINSIC_DIMENSION], LABELS[N.INTRINSIC_DIMENSION],
                     "intrinsic dimension of all tokens concatenated")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def eigenspectra(res: xr.Dataset, token: int = 0, checkpoint: int = -1) -> Any:
    """Eigenspectra on log-log axes with the alpha fit line, for first, middle and last layers."""
    if N.EIGENVALUES not in res:
        return None
    fit_range = tuple(res.attrs.get("alpha_fit_range", (11, 100)))
    layers = sorted(set(np.linspace(0, res.sizes[N.LAYER] - 1, 3).round().astype(int)))
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    colors = _layer_colors(res)
    n_features = int(np.isfinite(res[N.EIGENVALUES].isel(checkpoint=0, layer=0, token=0).values).sum())
    for li in layers:
        eigs = res[N.EIGENVALUES].isel(checkpoint=checkpoint, layer=li, token=token).values
        eigs = eigs[np.isfinite(eigs)]
        positive = eigs > 0
        ranks = np.arange(1, eigs.size + 1)
        label = f"layer {int(res[N.LAYER].values[li])}"
        ax.loglog(ranks[positive], eigs[positive], ".", ms=3, color=colors[li])
        alpha, _, _ = fit_alpha(eigs[None], fit_range, n_features)
        if np.isfinite(alpha[0]):
            lo, hi = fit_range[0], min(fit_range[1], int(positive.sum()) - 10)
            r = np.arange(lo, hi + 1)
            w = 1.0 / r
            intercept = np.sum(w * (np.log(eigs[lo - 1:hi]) + alpha[0] * np.log(r))) / np.sum(w)
            ax.loglog(r, np.exp(intercept) * r ** -alpha[0], "-", lw=2, color=colors[li],
                      label=f"{label}: alpha = {alpha[0]:.2f}")
        else:
            ax.plot([], [], ".", color=colors[li], label=f"{label}: alpha n/a")
    ax.axvspan(fit_range[0], fit_range[1], color="grey", alpha=0.1, label=f"fit ranks {fit_range[0]}-{fit_range[1]}")
    token_label = int(res[N.TOKEN].values[token])
    ax.set_title(f"eigenspectrum of token {token_label}, step {int(res[N.CHECKPOINT].values[checkpoint])}")
    ax.set_xlabel("rank i")
    ax.set_ylabel("covariance eigenvalue λᵢ")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def training_curve(training: dict | None) -> Any:
    if not training or not training.get("steps"):
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    ax.plot(training["steps"], training["accuracy"], "o-")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("training step (symlog)")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("training")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
