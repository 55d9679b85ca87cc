"""Figures of the gradient section (SPEC 5): tangent proxies against the recorded gradients.

Like ``figures``, each function returns a Figure or None when its variables are absent. The
controls are drawn as a band: each control draw's energy over the mean control energy is the
enrichment that draw would get, so the band around 1 is the draw-to-draw spread an
enrichment must clear to mean something. Alignments get the isotropic r / D from the attrs.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.report import figures as F

TANGENT_VARIABLES = (N.TANGENT_ENRICHMENT, N.CONTROL_ENERGY, N.TANGENT_ALIGNMENT, N.CONTROL_ALIGNMENT,
                     N.TANGENT_ENRICHMENT_BY_FREQUENCY)
BAND = (0.05, 0.95)  # quantiles of the control draws shown as the band
MAX_LAYER_LINES = 6  # evenly spaced layers against step: more lines and bands are unreadable
MAX_FREQUENCY_PANELS = 4  # layers of the enrichment-by-frequency grid
ENRICHMENT_LABEL = "tangent enrichment E_T / mean E_N (ratio)"
ALIGNMENT_LABEL = "alignment ‖QᵀU_r‖²_F / r (share of top-r)"
BAND_LABEL = f"controls, {BAND[0]:.0%}–{BAND[1]:.0%} of draws"
INTRO = (
    "Tangent proxies (Bernas et al., \"Revisiting Anisotropy in Language Transformers\"): Q_T is an "
    "orthonormal basis of the rank-r semi-NMF dictionary of a layer's activations, and the gradients "
    "∂L/∂h of the recorded loss are projected onto it. Enrichment is the share of gradient energy "
    "inside Q_T over the mean share inside random r-dim control subspaces orthogonal to it: 1 (dashed) "
    "is what isotropic gradients give, and > 1, above the grey band of the control draws' own spread, "
    "means the activation-derived directions carry unusually much of the gradient. Alignment is the "
    "share of the gradient second moment's top-r eigenvectors that lies inside the subspace; above "
    "the isotropic r/D (dotted) the tangent directions hold the gradient's anisotropy, and the "
    "controls (dashed) stay near r/D. The paper finds enrichment > 1 early in training and after, "
    "strongest for frequent tokens."
)


def present(res: xr.Dataset) -> bool:
    """Whether the results hold any tangent statistic (the section is shown only then)."""
    return any(name in res for name in TANGENT_VARIABLES)


def isotropic(res: xr.Dataset) -> float | None:
    """r / D from the result attrs; None when the analysis did not record it."""
    value = res.attrs.get(N.TANGENT_ISOTROPIC)
    return None if value is None else float(value)


def control_band(res: xr.Dataset) -> xr.DataArray | None:
    """(quantile, checkpoint, layer): the BAND quantiles of E_N,draw / mean E_N over the draws."""
    if N.CONTROL_ENERGY not in res:
        return None
    draws = res[N.CONTROL_ENERGY]
    ratio = draws / draws.mean(N.CONTROL_DRAW, skipna=True)
    return ratio.quantile(list(BAND), dim=N.CONTROL_DRAW, skipna=True)


def shown_layers(res: xr.Dataset, most: int) -> np.ndarray:
    """At most ``most`` layer indices, evenly spaced, always the first and the last."""
    n = res.sizes[N.LAYER]
    return np.unique(np.linspace(0, n - 1, min(n, most)).round().astype(int))


def _reference(ax: Any, res: xr.Dataset, metric: str) -> None:
    """The isotropic value: 1 for an enrichment, r / D (when recorded) for an alignment."""
    if metric == N.TANGENT_ENRICHMENT:
        ax.axhline(1.0, color="black", ls="--", lw=1, label="isotropic (1)")
        return
    value = isotropic(res)
    if value is not None:
        ax.axhline(value, color="black", ls=":", lw=1.2, label=f"isotropic r/D = {value:.3g}")


def _enrichment_panel(ax: Any, x: np.ndarray, values: np.ndarray, band: np.ndarray | None,
                      color: Any, label: str) -> None:
    ax.plot(x, values, "o-", ms=3, color=color, label=label)
    if band is not None:
        ax.fill_between(x, band[0], band[1], color=color, alpha=0.15, lw=0)


def _alignment_panel(ax: Any, res: xr.Dataset, x: np.ndarray, select: dict, color: Any,
                     label: str) -> None:
    if N.TANGENT_ALIGNMENT in res:
        ax.plot(x, res[N.TANGENT_ALIGNMENT].isel(select).values, "o-", ms=3, color=color, label=label)
    if N.CONTROL_ALIGNMENT in res:
        ax.plot(x, res[N.CONTROL_ALIGNMENT].isel(select).values, "s--", ms=2.5, lw=1, color=color,
                alpha=0.8)


PANEL_TITLES = {N.TANGENT_ENRICHMENT: "tangent enrichment",
                N.CONTROL_ALIGNMENT: "alignment with the gradient's top-r directions"}


def _panels(res: xr.Dataset) -> list[str]:
    """Enrichment and/or alignment (keyed by CONTROL_ALIGNMENT): which panels the variables fill."""
    panels = [N.TANGENT_ENRICHMENT] if N.TANGENT_ENRICHMENT in res else []
    if N.TANGENT_ALIGNMENT in res or N.CONTROL_ALIGNMENT in res:
        panels.append(N.CONTROL_ALIGNMENT)
    return panels


def _lines(res: xr.Dataset, over: str, x: np.ndarray, indices: np.ndarray, colors: list,
           labels: list[str]) -> Any:
    """The enrichment and alignment panels with one line per index of ``over`` (checkpoint or layer)."""
    panels = _panels(res)
    if not panels:
        return None
    band = control_band(res)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 2.0, 3.9), squeeze=False,
                             layout="constrained")
    for ax, metric in zip(axes[0], panels, strict=True):
        for i, color, label in zip(indices, colors, labels, strict=True):
            select = {over: int(i)}
            if metric == N.TANGENT_ENRICHMENT:
                spread = None if band is None else band.isel(select).values
                _enrichment_panel(ax, x, res[metric].isel(select).values, spread, color, label)
            else:
                _alignment_panel(ax, res, x, select, color, label)
        _reference(ax, res, metric)
        ax.set_ylabel(ENRICHMENT_LABEL if metric == N.TANGENT_ENRICHMENT else ALIGNMENT_LABEL)
        ax.set_title(PANEL_TITLES[metric], fontsize=10)
        ax.grid(alpha=0.3)
    _legend(fig, axes[0], "checkpoint" if over == N.CHECKPOINT else "layer",
            band=band is not None and N.TANGENT_ENRICHMENT in panels,
            control=N.CONTROL_ALIGNMENT in res and N.CONTROL_ALIGNMENT in panels)
    return fig, axes[0]


def _legend(fig: Any, axes: Any, title: str, band: bool, control: bool) -> None:
    """One legend for the figure: every panel's labels once, plus the band and dashed-line keys."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if control:
        seen["control alignment (dashed)"] = plt.Line2D([], [], color="grey", ls="--", marker="s", ms=2.5)
    if band:
        seen[BAND_LABEL] = plt.Rectangle((0, 0), 1, 1, color="grey", alpha=0.3)
    fig.legend(list(seen.values()), list(seen), loc="outside right upper", title=title, fontsize=8)


def across_layers(res: xr.Dataset) -> Any:
    """Enrichment (controls as bands) and tangent/control alignment against layer, one line per checkpoint."""
    n = res.sizes[N.CHECKPOINT]
    drawn = _lines(res, N.CHECKPOINT, res[N.LAYER].values, np.arange(n), F._colors("viridis", n),
                   [f"step {int(s)}" for s in res[N.CHECKPOINT].values])
    if drawn is None:
        return None
    fig, axes = drawn
    for ax in axes:
        F.layer_axis(ax)
    return fig


def over_training(res: xr.Dataset) -> Any:
    """Enrichment (controls as bands) and alignment against training step, one line per layer
    (at most MAX_LAYER_LINES, evenly spaced)."""
    if res.sizes[N.CHECKPOINT] < 2:
        return None
    layers = shown_layers(res, MAX_LAYER_LINES)
    palette = F._colors("plasma", res.sizes[N.LAYER])
    drawn = _lines(res, N.LAYER, res[N.CHECKPOINT].values, layers, [palette[i] for i in layers],
                   [f"layer {int(res[N.LAYER].values[i])}" for i in layers])
    if drawn is None:
        return None
    fig, axes = drawn
    for ax in axes:
        F.step_axis(ax, res[N.CHECKPOINT].values)
    return fig


def _count(value: int) -> str:
    return f"{value / 1000:.3g}k" if value >= 10_000 else str(value)


def bucket_labels(res: xr.Dataset) -> list[str]:
    """'low–high' corpus counts of each bucket (a bucket holds counts low ... high - 1)."""
    lows = res[N.FREQUENCY_LOW].values.astype(np.int64)
    highs = res[N.FREQUENCY_HIGH].values.astype(np.int64)
    return [_count(lo) if hi - 1 <= lo else f"{_count(lo)}–{_count(hi - 1)}"
            for lo, hi in zip(lows, highs, strict=True)]


def by_frequency(res: xr.Dataset) -> Any:
    """Enrichment against frequency bucket (log-spaced, rare to frequent), one line per checkpoint,
    one panel per layer for a few evenly spaced layers."""
    if N.TANGENT_ENRICHMENT_BY_FREQUENCY not in res or N.FREQUENCY_LOW not in res.coords:
        return None
    layers = shown_layers(res, MAX_FREQUENCY_PANELS)
    fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers) + 2.0, 3.9), squeeze=False,
                             sharey=True, layout="constrained")
    x = np.arange(res.sizes[N.FREQUENCY_BUCKET])
    labels = bucket_labels(res)
    colors = F._colors("viridis", res.sizes[N.CHECKPOINT])
    data = res[N.TANGENT_ENRICHMENT_BY_FREQUENCY]
    for ax, li in zip(axes[0], layers, strict=True):
        for ci, step in enumerate(res[N.CHECKPOINT].values):
            ax.plot(x, data.isel(checkpoint=ci, layer=li).values, "o-", ms=3, color=colors[ci],
                    label=f"step {int(step)}")
        ax.axhline(1.0, color="black", ls="--", lw=1, label="isotropic (1)")
        ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
        ax.set_xlabel("token count in the corpus (log-spaced buckets)")
        ax.set_title(f"layer {int(res[N.LAYER].values[li])}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ENRICHMENT_LABEL)
    fig.suptitle("tangent enrichment by token frequency (rare → frequent)", fontsize=11)
    F._legend_right(fig, axes[0][0], "checkpoint")
    return fig
