"""Figures of the gradient section (SPEC 5): tangent proxies against the recorded gradients.

Like ``figures``, each function returns a Figure or None when its variables are absent. The
controls are drawn as a band: each control draw's energy over the mean control energy is the
enrichment that draw would get, so the band around 1 is the draw-to-draw spread an
enrichment must clear to mean something. Alignments get the isotropic r / D from the attrs.
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

TANGENT_VARIABLES = (N.TANGENT_ENRICHMENT, N.CONTROL_ENERGY, N.TANGENT_ALIGNMENT, N.CONTROL_ALIGNMENT,
                     N.TANGENT_ENRICHMENT_BY_FREQUENCY, N.TANGENT_ENERGY, N.PCA_ENERGY, N.TANGENT_ENRICHMENT_VS_PCA,
                     N.LOCAL_TANGENT_ENERGY, N.LOCAL_TANGENT_NULL, N.TANGENT_ENRICHMENT_VS_PCA_BY_FREQUENCY)
BAND = (0.05, 0.95)  # quantiles of the control draws shown as the band
MAX_LAYER_LINES = 6  # evenly spaced layers against step: more lines and bands are unreadable
MAX_FREQUENCY_PANELS = 4  # layers of the enrichment-by-frequency grid
ENRICHMENT_LABEL = "enrichment (ratio; 1 = no more than the baseline)"
ALIGNMENT_LABEL = "alignment ‖QᵀU_r‖²_F / r (share of top-r)"
ENERGY_LABEL = "share of held-out gradient energy at rank r"
LOCAL_LABEL = "per-position share ‖P_i g_i‖² / ‖g_i‖²"
BAND_LABEL = f"controls, {BAND[0]:.0%}–{BAND[1]:.0%} of draws"
CI_LABEL = "5–95 % bootstrap interval over samples (each replicate refits the basis)"
STYLES = {  # quantity -> (line style, marker, legend key)
    N.TANGENT_ENRICHMENT: ("-", "o", "E_T / mean E_N (normal controls, band: draws)"),
    N.TANGENT_ENRICHMENT_VS_PCA: ("--", "^", "E_T / E_PCA (PCA at rank r)"),
    N.TANGENT_ENERGY: ("-", "o", "E_T: tangent proxy Q_T"),
    N.PCA_ENERGY: ("--", "^", "E_PCA: top-r principal subspace"),
    N.OPTIMAL_ENERGY: (":", "", "optimum: top-r of G"),
    N.ACTIVATION_ENERGY: ("-.", "", "activation energy inside Q_T"),
    N.LOCAL_TANGENT_ENERGY: ("-", "o", "local: atoms active at i"),
    N.LOCAL_TANGENT_NULL: ("--", "x", "null: atoms of another position"),
    N.RADIAL_ENERGY: (":", "", "radial: along x_i / ‖x_i‖"),
    N.RADIAL_NULL: (":", "+", "radial null: along another position's x"),
    N.TANGENT_ALIGNMENT: ("-", "o", "tangent alignment"),
    N.TANGENT_ALIGNMENT_WEIGHTED: ("-.", "", "tangent alignment, μ-weighted"),
    N.CONTROL_ALIGNMENT: ("--", "s", "control alignment"),
}
INTERVAL_OF = {N.TANGENT_ENERGY: N.TANGENT_ENERGY_CI, N.TANGENT_ENRICHMENT_VS_PCA: N.TANGENT_ENRICHMENT_VS_PCA_CI,
               N.LOCAL_TANGENT_ENERGY: N.LOCAL_TANGENT_ENERGY_CI, N.LOCAL_TANGENT_NULL: N.LOCAL_TANGENT_NULL_CI}
PANELS = {  # panel key -> (title, y label, quantities drawn in it)
    N.TANGENT_ENRICHMENT: ("enrichment over two baselines", ENRICHMENT_LABEL,
                           (N.TANGENT_ENRICHMENT, N.TANGENT_ENRICHMENT_VS_PCA)),
    N.CONTROL_ALIGNMENT: ("alignment with the gradient's top-r directions", ALIGNMENT_LABEL,
                          (N.TANGENT_ALIGNMENT, N.TANGENT_ALIGNMENT_WEIGHTED, N.CONTROL_ALIGNMENT)),
    N.TANGENT_ENERGY: ("energy: tangent vs PCA vs optimum", ENERGY_LABEL,
                       (N.TANGENT_ENERGY, N.PCA_ENERGY, N.OPTIMAL_ENERGY, N.ACTIVATION_ENERGY)),
    N.LOCAL_TANGENT_ENERGY: ("local tangency vs its null", LOCAL_LABEL,
                             (N.LOCAL_TANGENT_ENERGY, N.LOCAL_TANGENT_NULL, N.RADIAL_ENERGY, N.RADIAL_NULL)),
}
INTRO = (
    "Tangent proxies (Bernas et al., \"Revisiting Anisotropy in Language Transformers\"): Q_T is an "
    "orthonormal basis of the rank-r semi-NMF dictionary of a layer's activations, fitted on one seeded "
    "half of the samples, and the gradients ∂L/∂h of the recorded loss on the other half are projected "
    "onto it. Each tangent number is drawn beside the baseline that could explain it away: the normal "
    "controls (random r-dim subspaces orthogonal to Q_T; enrichment over them is > 1 for any gradient "
    "that merely shares the activations' anisotropy), the top-r singular subspace of the same un-centred "
    "activations the semi-NMF is fitted to (E_T / E_PCA > 1 only when the proxy captures gradient energy "
    "that the activations' second moment does not explain), the most "
    "any rank-r subspace can capture, and, per position, the atoms active at that position against "
    "those of another position (the null; the radial share likewise against another position's "
    "direction). Intervals come from bootstrap replicates that resample both halves and refit the basis, "
    "so they carry the fit's own variability. Alignment is the share of the gradient second moment's "
    "top-r eigenvectors inside the subspace; the isotropic value r/D is dotted."
)
def training_caption(res: xr.Dataset) -> str:
    """The over-training caption with the layers it shows: each, or which of them when there are many."""
    n = res.sizes[N.LAYER]
    per = ("one colour per layer" if n <= MAX_LAYER_LINES else
           f"one colour for each of {MAX_LAYER_LINES} of the {n} layers (evenly spaced, first and last)")
    return (f"The same panels against training step, {per} (the paper: enrichment > 1 appears early and "
            "persists); activation energy (dash-dot) is the confound of a rising E_T.")


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


def _reference(ax: Any, res: xr.Dataset, panel: str) -> None:
    """1 for an enrichment; r / D (when recorded) for an alignment and for energies."""
    if panel == N.TANGENT_ENRICHMENT:
        ax.axhline(1.0, color="black", ls="--", lw=1, label="no enrichment (1)")
        return
    value = isotropic(res)
    if value is not None and panel != N.LOCAL_TANGENT_ENERGY:
        ax.axhline(value, color="black", ls=":", lw=1.2, label=f"isotropic r/D = {value:.3g}")


def _panels(res: xr.Dataset) -> list[str]:
    """The panels whose quantities are in the results, in a fixed order (enrichment first)."""
    return [key for key, (_, _, names) in PANELS.items() if any(name in res for name in names)]


def _band(res: xr.Dataset, name: str, select: dict) -> np.ndarray | None:
    """(2, n) the band drawn around ``name``: its bootstrap interval, or the control draws' spread."""
    if name == N.TANGENT_ENRICHMENT:
        band = control_band(res)
        return None if band is None else band.isel(select).values
    interval = INTERVAL_OF.get(name)
    if interval is None or interval not in res:
        return None
    return np.moveaxis(res[interval].isel(select).values, -1, 0)


def _draw(ax: Any, res: xr.Dataset, panel: str, x: np.ndarray, select: dict, color: Any) -> None:
    for name in PANELS[panel][2]:
        if name not in res:
            continue
        ls, marker, _ = STYLES[name]
        values = res[name].isel(select).values
        ax.plot(x, values, ls=ls, marker=marker or None, ms=3, lw=1.4 if ls == "-" else 1.1, color=color,
                alpha=1.0 if ls == "-" else 0.85)
        band = _band(res, name, select)
        if band is not None:
            ax.fill_between(x, band[0], band[1], color=color, alpha=0.15, lw=0)


def _lines(res: xr.Dataset, over: str, x: np.ndarray, indices: np.ndarray, colors: list,
           labels: list[str]) -> Any:
    """Every panel with one colour per index of ``over`` (checkpoint or layer), one style per quantity."""
    panels = _panels(res)
    if not panels:
        return None
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols + 3.2, 3.7 * rows), squeeze=False,
                             layout="constrained")
    flat = axes.ravel()
    for ax, panel in zip(flat, panels, strict=False):
        for i, color in zip(indices, colors, strict=True):
            _draw(ax, res, panel, x, {over: int(i)}, color)
        _reference(ax, res, panel)
        title, ylabel, _ = PANELS[panel]
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    _legend(fig, res, panels, colors, labels, "checkpoint" if over == N.CHECKPOINT else "layer")
    return fig, flat[: len(panels)]


def _legend(fig: Any, res: xr.Dataset, panels: list[str], colors: list, labels: list[str], title: str) -> None:
    """Two legends: a colour per line index (checkpoint or layer), and under it a grey key per quantity
    style, reference and band drawn (one 16-entry list mixed colours and styles)."""
    fig.legend([plt.Line2D([], [], color=c, lw=2) for c in colors], list(labels), loc="outside right upper",
               title=title, fontsize=7)
    handles: list = []
    names: list[str] = []
    for panel in panels:
        for name in PANELS[panel][2]:
            if name in res:
                ls, marker, text = STYLES[name]
                handles.append(plt.Line2D([], [], color="grey", ls=ls, marker=marker or None, ms=3))
                names.append(text)
    if N.TANGENT_ENRICHMENT in panels:
        handles.append(plt.Line2D([], [], color="black", ls="--", lw=1))
        names.append("no enrichment (1)")
    if isotropic(res) is not None and any(p in panels for p in (N.CONTROL_ALIGNMENT, N.TANGENT_ENERGY)):
        handles.append(plt.Line2D([], [], color="black", ls=":", lw=1.2))
        names.append(f"isotropic r/D = {isotropic(res):.3g}")
    if N.CONTROL_ENERGY in res and N.TANGENT_ENRICHMENT in panels:
        handles.append(plt.Rectangle((0, 0), 1, 1, color="grey", alpha=0.3))
        names.append(BAND_LABEL + " (around E_T / E_N)")
    if any(name in res for name in INTERVAL_OF.values()):
        handles.append(plt.Rectangle((0, 0), 1, 1, color="grey", alpha=0.15))
        names.append(CI_LABEL)
    fig.legend(handles, names, loc="outside right lower", title="line style", fontsize=7)


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
    data = res[N.TANGENT_ENRICHMENT_BY_FREQUENCY]
    pca = res.get(N.TANGENT_ENRICHMENT_VS_PCA_BY_FREQUENCY)
    # buckets with no value anywhere (fewer held-out positions than the equal count) leave the axis: ten
    # ticks for two drawn buckets were unreadable; the title says how many are left out
    filled = np.isfinite(np.asarray(data.values, dtype=float)).any(axis=tuple(range(data.ndim - 1)))
    kept = np.flatnonzero(filled) if filled.any() else np.arange(res.sizes[N.FREQUENCY_BUCKET])
    x = np.arange(kept.size)
    labels = [bucket_labels(res)[b] for b in kept]
    colors = F._colors("viridis", res.sizes[N.CHECKPOINT])
    for ax, li in zip(axes[0], layers, strict=True):
        series = [(f"step {int(step)}", data.isel(checkpoint=ci, layer=li).values[kept], colors[ci])
                  for ci, step in enumerate(res[N.CHECKPOINT].values)]
        F.plot_series(ax, x, series, why="no bucket with enough held-out positions")
        if pca is not None:
            for ci in range(res.sizes[N.CHECKPOINT]):
                values = pca.isel(checkpoint=ci, layer=li).values[kept]
                if np.isfinite(values).any():
                    ax.plot(x, values, "^--", ms=3, lw=1.1, color=colors[ci])
        ax.axhline(1.0, color="black", ls="--", lw=1, label="no enrichment (1)")
        ax.set_xticks(x, labels, rotation=45 if kept.size > 4 else 0, ha="right" if kept.size > 4 else "center",
                      fontsize=7)
        ax.set_xlabel("token count in the corpus (log-spaced buckets)")
        ax.set_title(f"layer {int(res[N.LAYER].values[li])}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ENRICHMENT_LABEL)
    count = res.attrs.get("tangent_frequency_count")
    equal = f", {count} held-out positions per bucket" if count is not None else ""
    if kept.size < res.sizes[N.FREQUENCY_BUCKET]:
        equal += f"; {res.sizes[N.FREQUENCY_BUCKET] - kept.size} of {res.sizes[N.FREQUENCY_BUCKET]} buckets have fewer"
        equal += " and are left out"
    fig.suptitle("tangent enrichment by token frequency (rare → frequent): solid E_T / E_N, dashed E_T / E_PCA"
                 + equal, fontsize=9, wrap=True)
    F._legend_right(fig, axes[0][0], "checkpoint")
    return fig


# ---- what the numbers support: one sentence under each figure ------------------------------------

def _layers_where(mask: np.ndarray, res: xr.Dataset) -> str:
    layers = res[N.LAYER].values[np.asarray(mask, bool)]
    if layers.size == 0:
        return "no layer"
    shown = ", ".join(str(int(v)) for v in layers[:8]) + (", …" if layers.size > 8 else "")
    return f"layer{'s' if layers.size > 1 else ''} {shown} ({layers.size} of {res.sizes[N.LAYER]})"


def _last(res: xr.Dataset, name: str) -> np.ndarray | None:
    return None if name not in res else np.asarray(res[name].isel({N.CHECKPOINT: -1}).values, dtype=np.float64)


def reading_layers(res: xr.Dataset) -> str | None:
    """What the across-layer figure supports at the last checkpoint, and what it does not."""
    parts = []
    vs_pca, ci = _last(res, N.TANGENT_ENRICHMENT_VS_PCA), _last(res, N.TANGENT_ENRICHMENT_VS_PCA_CI)
    if vs_pca is None:
        if N.TANGENT_ENRICHMENT in res:
            return ("These results have no PCA baseline (tangent_enrichment_vs_pca), so an enrichment over the normal "
                    "controls here cannot tell tangent directions from high-variance ones: re-run `tgo analyze "
                    "--metrics tangent`.")
        return None
    above = ci[..., 0] > 1 if ci is not None else vs_pca > 1
    below = ci[..., 1] < 1 if ci is not None else vs_pca < 1
    parts.append(f"at the last checkpoint E_T exceeds the matched-rank PCA energy (interval above 1) at "
                 f"{_layers_where(above, res)} and falls below it at {_layers_where(below, res)}")
    if "un-centred" not in str(res.attrs.get("tangent_pca", "")):
        parts.append("these results predate the matched-centring PCA baseline (their Q_P is centred, the "
                     "semi-NMF is not), so E_T / E_PCA > 1 may only be the activations' mean direction")
    local, excess_ci = _last(res, N.LOCAL_TANGENT_ENERGY), _last(res, N.LOCAL_TANGENT_EXCESS_CI)
    if excess_ci is not None:
        above_null = excess_ci[..., 0] > 0
        parts.append(f"the per-position test is above its null (interval of local − null above 0) at "
                     f"{_layers_where(above_null, res)}")
    elif local is not None:
        parts.append("no layer is called above its null: these results have no interval of the paired excess "
                     "(local_tangent_excess_ci); re-run `tgo analyze --metrics tangent`")
    reason = _last(res, N.TANGENT_METRIC_REASON)
    if reason is not None and (reason == 1).any():
        parts.append(f"the semi-NMF fit did not converge at {_layers_where(reason == 1, res)}, so those points "
                     "rest on an unconverged basis")
    return ("What this supports: " + "; ".join(parts) + "; an enrichment over the normal controls alone is not "
            "evidence of tangency, since gradients that only share the activations' anisotropy also give one.")


def reading_training(res: xr.Dataset) -> str | None:
    """Whether E_T's change over training follows the activations' own concentration."""
    if res.sizes[N.CHECKPOINT] < 2 or N.TANGENT_ENERGY not in res:
        return None
    if N.ACTIVATION_ENERGY not in res:
        return ("What this supports: the change of E_T over training, but without activation_energy it cannot be "
                "told apart from the activations themselves becoming more concentrated in Q_T.")
    e_t = res[N.TANGENT_ENERGY].values
    act = res[N.ACTIVATION_ENERGY].values
    d_t, d_a = e_t[-1] - e_t[0], act[-1] - act[0]
    same = np.isfinite(d_t) & np.isfinite(d_a) & (np.sign(d_t) == np.sign(d_a))
    return (f"What this supports: from the first to the last checkpoint E_T moves in the same direction as the "
            f"activations' own energy inside Q_T at {_layers_where(same, res)}; there a change of E_T may only mean "
            "the activations got more anisotropic, and only E_T / E_PCA with its interval away from 1 speaks for "
            "the gradients themselves.")


def reading_frequency(res: xr.Dataset) -> str | None:
    """What the by-frequency figure supports: equal counts, no per-bucket interval."""
    if N.TANGENT_ENRICHMENT_BY_FREQUENCY not in res:
        return None
    count = res.attrs.get("tangent_frequency_count")
    parts = [f"each bucket is scored on the same number of held-out positions ({count})" if count is not None
             else "bucket sizes are not recorded, so a bucket's size may be driving its value"]
    measured = False
    for name, what in ((N.TANGENT_ENRICHMENT_BY_FREQUENCY, "E_T / E_N"),
                       (N.TANGENT_ENRICHMENT_VS_PCA_BY_FREQUENCY, "E_T / E_PCA")):
        values = _last(res, name)
        if values is not None and np.isfinite(values).any():
            measured = True
            share = float(np.mean(values[np.isfinite(values)] > 1))
            parts.append(f"{what} is above 1 in {share:.0%} of the (layer, bucket) cells with a value at the last "
                         "checkpoint")
    if not measured:  # nothing to read: the figure's notes say which buckets have no value
        return None
    return ("What this supports: " + "; ".join(parts) + "; there is no interval per bucket, so differences between "
            "buckets smaller than the per-layer intervals of the figure above are not evidence of a frequency effect.")


# Shown only for results that have tangent statistics (SPEC 5 gradients; text models and ViTs alike).
_section = partial(Section, group="tangent", needs=TANGENT_VARIABLES)

register(
    _section("tangent_layers", "Gradients and tangent proxies across layers",
            INTRO + " Here: one colour per checkpoint against layer; grey bands are the spread of the "
            "control draws (around E_T / E_N) and the 5-95 % bootstrap intervals over held-out samples.",
            lambda r, o: across_layers(r), reading_layers),
    _section("tangent_training", "Gradients and tangent proxies over training",
            training_caption,
            lambda r, o: over_training(r), reading_training),
    _section("tangent_frequency", "Tangent enrichment by token frequency",
            "Tangent enrichment over an equal-count subsample of the held-out positions of each "
            "log-spaced bucket of corpus token counts (masked-LM masked positions in no bucket), against "
            "the normal controls (solid) and the PCA subspace (dashed), one colour per checkpoint, a few "
            "layers (the paper: strongest for frequent tokens).",
            lambda r, o: by_frequency(r), reading_frequency),
)

