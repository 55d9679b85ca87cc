"""Normalisation statistics of the loader's positions: per-feature mean, std and one scale.

Definitions (over every position one epoch yields, all chosen checkpoints together):

- ``mean``  μ_d = (1/N) Σ_i x_id  (D,)
- ``std``   σ_d = sqrt(Σ_i (x_id − μ_d)² / (N − 1))  (D,), the unbiased per-feature std
- ``scale`` s = sqrt(Σ_d σ_d² / D) = sqrt(trace(C) / D), C the unbiased covariance: the RMS
  of a centred entry, so (x − μ) / s has E‖·‖² ≈ D whatever the layer's norm.

They come from one streamed pass in float64 (per piece two-pass, merged across pieces with the
pairwise update of Chan, Golub & LeVeque; the full covariance merge lives in tgo_analysis,
which tgo_store does not import). ``scale`` can instead come from an analysis results store:
trace(C) is the sum of the layer's ``eigenvalues_pooled`` when the pooled positions were the
same ones (same exclusions, all tokens, one checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tgo_store.loader.mixing import Window
from tgo_store.loader.source import LayerSource, Part

ROWS = 16384  # positions converted to float64 at a time: bounds the scratch to ROWS x D


@dataclass
class FeatureMoments:
    count: int
    mean: np.ndarray  # (D,) float64
    m2: np.ndarray  # (D,) float64: Σ (x − mean)²

    @classmethod
    def of(cls, x: np.ndarray) -> FeatureMoments:
        x64 = np.asarray(x, dtype=np.float64)
        mean = x64.mean(axis=0) if len(x64) else np.zeros(x64.shape[1])
        return cls(len(x64), mean, ((x64 - mean) ** 2).sum(axis=0))

    def merge(self, other: FeatureMoments) -> FeatureMoments:
        n = self.count + other.count
        if not other.count or not self.count:
            return other if not self.count else self
        delta = other.mean - self.mean
        return FeatureMoments(n, self.mean + delta * other.count / n,
                              self.m2 + other.m2 + delta**2 * self.count * other.count / n)


@dataclass(frozen=True)
class Stats:
    count: int
    mean: np.ndarray
    std: np.ndarray
    scale: float
    source: str  # "pass" or "results"


def streamed(source: LayerSource, several: bool, progress: bool = False) -> Stats:
    """One pass over every piece in store order, float64 per feature (a progress bar over positions)."""
    from tgo_store.progress import progress_bar

    total = FeatureMoments(0, np.zeros(source.n_features), np.zeros(source.n_features))
    fields = source.fields(several)
    with progress_bar("loader statistics (positions)", int(source.counts.sum()), progress) as bar:
        for p, count in enumerate(source.counts):
            for lo in range(0, int(count), ROWS):
                hi = min(int(count), lo + ROWS)
                win = Window.allocate(p, fields, hi - lo, source.n_features, np.arange(hi - lo))
                source.read_part(Part(p, lo, hi), win.arrays, 0)
                total = total.merge(FeatureMoments.of(win.arrays["activations"]))
                bar.advance(hi - lo)
    var = total.m2 / max(total.count - 1, 1)
    return Stats(total.count, total.mean, np.sqrt(var), float(np.sqrt(var.mean())), "pass")


def results_scale(results: Any, source: LayerSource) -> float | None:
    """``scale`` from a results store's ``eigenvalues_pooled`` when it describes these positions, else None."""
    import xarray as xr

    if len(source.checkpoints) != 1 or source.tokens.size != source.n_tokens:
        return None
    try:
        res = results if isinstance(results, xr.Dataset) else xr.open_zarr(str(results), zarr_format=3)
    except Exception:  # unreadable results: fall back to the streamed pass
        return None
    name = "eigenvalues_pooled"
    if name not in res:
        return None
    attrs = {**res.attrs, **res[name].attrs}
    if (bool(attrs.get("pooled_exclude_special", False)) != source.choice.exclude_special
            or bool(attrs.get("pooled_exclude_first", False)) != source.choice.exclude_first):
        return None
    step = int(source.steps[int(source.checkpoints[0])])
    try:
        eig = res[name].sel(checkpoint=step, layer=source.layer).values.astype(np.float64)
    except (KeyError, IndexError):
        return None
    if not np.isfinite(eig).all():
        return None
    return float(np.sqrt(np.clip(eig, 0, None).sum() / source.n_features))
