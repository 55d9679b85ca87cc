"""Encoder and decoder side by side: the report sections that read the seed papers' claims on both.

Drawn when the report compares results of a model whose attention runs the other way (a masked-LM
encoder beside a causal-LM decoder: ``tgo demo --text``, or ``tgo report --compare encoder=...``).
Each section draws both models on one scale and its reading is a verdict of ``seed_claims``,
computed from the two results: the anisotropy profile's shape per checkpoint, pooled intrinsic
dimension over training, and tangent enrichment over PCA and over the per-position null.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.report import figures as F
from tgo_analysis.report import seed_claims as C
from tgo_analysis.report.language import POOLED_LABELS, without_final_norm
from tgo_analysis.report.page import as_mapping
from tgo_analysis.report.sections import Section, register
from tgo_store.facts import CAUSAL_LM, MASKED_LM

DECODER, ENCODER = "decoder", "encoder"
COLOURS = {DECODER: "tab:blue", ENCODER: "tab:orange"}


def direction(res: xr.Dataset) -> str | None:
    """'decoder' or 'encoder', from the store's model description (or its loss) in the results' attrs."""
    inputs = as_mapping(res.attrs.get("input_attrs"))
    is_decoder = as_mapping(as_mapping(inputs.get("model")).get("transformers")).get("is_decoder")
    if is_decoder is None:
        is_decoder = {CAUSAL_LM: True, MASKED_LM: False}.get(as_mapping(inputs.get("loss")).get("kind"))
    return None if is_decoder is None else (DECODER if is_decoder else ENCODER)


def pair(res: xr.Dataset, options: dict) -> dict[str, xr.Dataset] | None:
    """{'decoder': results, 'encoder': results}: these results and the first compared results of a model
    that runs the other way; None when the report compares no such model."""
    mine = direction(res)
    if mine is None:
        return None
    for other in (options.get("compare") or {}).values():
        theirs = direction(other)
        if theirs is not None and theirs != mine:
            return {mine: res, theirs: other}
    return None


def has_pair(res: xr.Dataset, options: dict) -> bool:
    return pair(res, options) is not None


def _steps(ds: xr.Dataset) -> np.ndarray:
    return np.asarray(ds[N.CHECKPOINT].values)


def _profiles(ds: xr.Dataset) -> np.ndarray | None:
    """(checkpoint, layer) λ₁/Σλ without the state after a final norm (Razzhigaev et al.'s layers)."""
    return None if N.TOP1_SHARE_POOLED not in ds else without_final_norm(ds)[N.TOP1_SHARE_POOLED].values


# ---- figures ---------------------------------------------------------------------------------------

def _two_panels(titles: list[str], ylabels: list[str], sharey: bool) -> tuple[Any, Any]:
    fig, axes = plt.subplots(1, len(titles), figsize=(5.0 * len(titles) + 1.5, 3.6), squeeze=False,
                             sharey=sharey, layout="constrained")
    for ax, title, ylabel in zip(axes[0], titles, ylabels, strict=True):
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    return fig, axes[0]


def anisotropy_shapes(res: xr.Dataset, options: dict) -> Any:
    """Bell contrast and range of each model's profile, against training step."""
    models = pair(res, options)
    if models is None or any(_profiles(ds) is None for ds in models.values()):
        return None
    fig, axes = _two_panels(["interior peak minus the higher end (bell contrast)", "range across layers"],
                            ["λ₁ / Σλ (pooled)", "λ₁ / Σλ (pooled)"], sharey=False)
    for name, ds in sorted(models.items()):
        shapes = [C.profile_shape(p) for p in _profiles(ds)]
        F.plot_series(axes[0], _steps(ds), [(name, [s[1] for s in shapes], COLOURS[name])])
        F.plot_series(axes[1], _steps(ds), [(name, [s[2] for s in shapes], COLOURS[name])])
    for ax in axes:
        ax.axhline(C.SHAPE_MARGIN, color="grey", ls=":", lw=1, label=f"{C.SHAPE_MARGIN}: the shape threshold")
        F.step_axis(ax, np.concatenate([_steps(ds) for ds in models.values()]))
        ax.legend(fontsize=7)
    return fig


def dimension_over_training(res: xr.Dataset, options: dict) -> Any:
    """Pooled TwoNN intrinsic dimension against step, one line per layer, one panel per model."""
    models = pair(res, options)
    if models is None or any(N.INTRINSIC_DIMENSION_POOLED not in ds for ds in models.values()):
        return None
    names = sorted(models)
    fig, axes = _two_panels(names, [POOLED_LABELS[N.INTRINSIC_DIMENSION_POOLED]] * 2, sharey=True)
    for ax, name in zip(axes, names, strict=True):
        ds = models[name]
        F._lines_per_layer(ax, ds, ds[N.INTRINSIC_DIMENSION_POOLED], POOLED_LABELS[N.INTRINSIC_DIMENSION_POOLED])
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    return fig


def _clearing(ds: xr.Dataset, name: str, null: float) -> np.ndarray | None:
    """Share of layers whose interval's lower bound clears ``null``, per checkpoint (NaN without a value)."""
    if name not in ds:
        return None
    counts = C.layers_clearing(ds[name].isel({N.BOUND: 0}).values, null)
    return np.array([k / n if n else np.nan for k, n in counts])


TANGENT_TESTS = ((N.TANGENT_ENRICHMENT_VS_PCA_CI, 1.0, "E_T / E_PCA"),
                 (N.LOCAL_TANGENT_EXCESS_CI, 0.0, "local − null"))


def tangent_over_training(res: xr.Dataset, options: dict) -> Any:
    """Share of layers whose tangent intervals clear their nulls, against step, both models."""
    models = pair(res, options)
    if models is None or not all(any(t[0] in ds for t in TANGENT_TESTS) for ds in models.values()):
        return None
    fig, axes = _two_panels([f"{t[2]}: interval above {t[1]:g}" for t in TANGENT_TESTS], ["share of layers"] * 2,
                            sharey=True)
    for ax, (name, null, _) in zip(axes, TANGENT_TESTS, strict=True):
        for model, ds in sorted(models.items()):
            share = _clearing(ds, name, null)
            if share is not None:
                F.plot_series(ax, _steps(ds), [(model, share, COLOURS[model])], why="no interval")
        ax.axhline(C.MAJORITY, color="grey", ls=":", lw=1, label="a majority of layers")
        ax.set_ylim(-0.05, 1.05)
        F.step_axis(ax, np.concatenate([_steps(ds) for ds in models.values()]))
        ax.legend(fontsize=7)
    return fig


# ---- readings --------------------------------------------------------------------------------------

def anisotropy_verdict(models: dict[str, xr.Dataset]) -> C.Verdict:
    dec, enc = _profiles(models[DECODER]), _profiles(models[ENCODER])
    if dec is None or enc is None:
        return C.Verdict(None, "one model has no pooled anisotropy", {})
    count = min(len(dec), len(enc))
    return C.anisotropy_contrast(dec[-count:], enc[-count:], _steps(models[DECODER])[-count:])


def dimension_verdicts(models: dict[str, xr.Dataset]) -> dict[str, C.Verdict]:
    return {name: C.rise_then_fall(ds[N.INTRINSIC_DIMENSION_POOLED].values, _steps(ds))
            for name, ds in models.items() if N.INTRINSIC_DIMENSION_POOLED in ds}


def tangent_verdicts(models: dict[str, xr.Dataset]) -> dict[str, C.Verdict]:
    """'<model> vs PCA', '<model> local', '<model> frequency' -> verdict."""
    out = {}
    for name, ds in sorted(models.items()):
        for var, null, what in TANGENT_TESTS:
            if var in ds:
                key = "vs PCA" if var == N.TANGENT_ENRICHMENT_VS_PCA_CI else "local"
                out[f"{name} {key}"] = C.early_and_persistent(ds[var].isel({N.BOUND: 0}).values, null, _steps(ds),
                                                              what)
        if N.TANGENT_ENRICHMENT_VS_PCA_BY_FREQUENCY in ds:
            from tgo_analysis.report.language import bucket_centres

            out[f"{name} frequency"] = C.frequent_strongest(
                ds[N.TANGENT_ENRICHMENT_VS_PCA_BY_FREQUENCY].isel({N.CHECKPOINT: -1}).values, bucket_centres(ds))
    return out


def _say(verdicts: dict[str, C.Verdict]) -> str:
    return " ".join(f"{name[:1].upper() + name[1:]}: {v.sentence} ({v.word})." for name, v in verdicts.items())


def anisotropy_reading(res: xr.Dataset, options: dict) -> str | None:
    models = pair(res, options)
    if models is None:
        return None
    verdict = anisotropy_verdict(models)
    return (f"Razzhigaev et al.'s contrast, decoder bell vs encoder flat ({verdict.word}): {verdict.sentence}. "
            f"Shapes use a threshold of {C.SHAPE_MARGIN} of λ₁/Σλ; λ₁/Σλ carries no interval here, and the isotropic "
            "baseline (top1_share_pooled_isotropic) says what n and D alone give.")


def dimension_reading(res: xr.Dataset, options: dict) -> str | None:
    models = pair(res, options)
    if models is None:
        return None
    return ("Razzhigaev et al.: intrinsic dimension rises early in training, then falls. " + _say(dimension_verdicts(models))
            + " TwoNN has no interval here: changes of a few tenths are within its sampling spread.")


def tangent_reading(res: xr.Dataset, options: dict) -> str | None:
    models = pair(res, options)
    if models is None:
        return None
    verdicts = tangent_verdicts(models)
    if not verdicts:
        return None
    return ("\"Revisiting anisotropy\": tangent enrichment emerges early in training and persists, strongest for "
            "frequent tokens. A layer counts only where its bootstrap interval excludes the null. " + _say(verdicts))


_section = partial(Section, group="encoder_decoder", needs=(N.TOP1_SHARE_POOLED, N.INTRINSIC_DIMENSION_POOLED,
                                                            N.TANGENT_ENRICHMENT_VS_PCA_CI),
                   reads_options=True, applies=has_pair)

register(
    _section("encoder_decoder_anisotropy", "Encoder and decoder: shape of the anisotropy profile over training",
             "For each model and checkpoint, the λ₁/Σλ profile across layers (pooled positions; a decoder's state "
             "after its final norm left out) summarised by its highest interior value minus the higher of its two "
             "ends (left) and by its range (right); the dotted line is the threshold above which a profile counts "
             "as a bell (left) and below which as flat (right).",
             anisotropy_shapes, anisotropy_reading),
    _section("encoder_decoder_dimension", "Encoder and decoder: pooled intrinsic dimension over training",
             "TwoNN intrinsic dimension of pooled positions against training step, one line per layer, one panel "
             "per model, on one y scale.",
             dimension_over_training, dimension_reading),
    _section("encoder_decoder_tangent", "Encoder and decoder: tangent enrichment over training",
             "Share of layers whose 5-95 % bootstrap interval clears its null against training step, one line per "
             "model: the enrichment over the matched-rank PCA subspace (left) and the per-position tangency over "
             "its permuted null (right); the dotted line is a majority of layers.",
             tangent_over_training, tangent_reading),
)
