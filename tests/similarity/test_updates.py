"""update_norm, update_tangent_energy, update_pca_energy against float64 in memory, with planted nulls."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import tgo_analysis
from tgo_analysis.statistics.base import Block
from tgo_analysis.statistics.tangent_fit import (
    TangentOptions,
    fit_draws,
    fit_positions,
    fit_split,
    fit_unit,
)

TOL = 1e-9


def store(x: np.ndarray, mask: np.ndarray | None = None) -> xr.Dataset:
    coords: dict = {"checkpoint": np.arange(x.shape[0]) * 100}
    if mask is not None:
        coords["attention_mask"] = (("sample", "token"), mask)
    return xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), x)},
                      coords=coords).chunk({"sample": 50})


def expected(h0: np.ndarray, h1: np.ndarray, valid: np.ndarray, q_t: np.ndarray) -> tuple[float, float, float]:
    """Mean ‖u‖, tangent share and PCA share of Σ‖u‖² (Q_P = top-r eigenvectors of h0's pooled covariance)."""
    a, b = h0[valid].astype(np.float64), h1[valid].astype(np.float64)
    u = b - a
    _, vectors = np.linalg.eigh(np.cov(a, rowvar=False))
    q_p = vectors[:, ::-1][:, :q_t.shape[1]]
    total = np.sum(u**2)
    return (float(np.linalg.norm(u, axis=1).mean()), float(np.sum((u @ q_t) ** 2) / total),
            float(np.sum((u @ q_p) ** 2) / total))


def planted(update: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n, t, d = 200, 3, 16
    h = np.abs(rng.standard_normal((n, t, d))) * np.linspace(3, 0.2, d)  # variance in the first directions
    if update == "isotropic":
        step = 0.3 * rng.standard_normal((n, t, d))
    else:  # inside the top-4 variance directions of checkpoint 0
        step = np.zeros((n, t, d))
        step[..., :4] = 0.3 * rng.standard_normal((n, t, 4))
    return np.stack([h, h + step, h + 2 * step])[:, None].astype(np.float32)


@pytest.mark.parametrize("sparsity", [None, 0.0])  # the default sparse fit, and Ding's plain one by its flag
def test_updates_match_the_formula_and_the_isotropic_null_comes_out_r_over_d(sparsity) -> None:
    x = planted("isotropic")
    mask = np.random.default_rng(1).random(x.shape[2:4]) > 0.2
    ds = store(x, mask)
    flags = {} if sparsity is None else {"tangent_sparsity": sparsity}
    res = tgo_analysis.analyze(ds, "updates", progress=False, tangent_rank=4, **flags)
    assert res.attrs["update_isotropic_expectation"] == 4 / 16
    for k in range(2):
        fields = {} if sparsity is None else {"sparsity": sparsity}
        options = TangentOptions(rank=4, control_draws=1, **fields).resolved(x.shape[-1])
        draws = fit_draws(fit_positions(ds, fit_split(x.shape[2], options.fit_fraction, options.seed),
                                        options.positions), options)
        fit = Block(x[k, 0][draws.rows], (0, x.shape[3]), draws.rows)  # the rows the engine reads for the fit
        q_t = fit_unit(fit, draws, k, 0, options).tangent
        norm, tangent, pca = expected(x[k, 0], x[k + 1, 0], mask, q_t)
        assert abs(res.update_norm.values[k, 0] - norm) < TOL
        assert abs(res.update_tangent_energy.values[k, 0] - tangent) < TOL
        assert abs(res.update_pca_energy.values[k, 0] - pca) < TOL
        assert abs(pca - 0.25) < 0.05 and abs(tangent - 0.25) < 0.05  # the planted null: r / D
    assert np.isnan(res.update_norm.values[2, 0])  # no next checkpoint


def test_updates_inside_the_variance_subspace_show_in_the_pca_share() -> None:
    res = tgo_analysis.analyze(store(planted("top")), "update_pca_energy,update_norm", progress=False,
                               tangent_rank=4)
    assert "update_tangent_energy" not in res
    assert res.update_pca_energy.values[0, 0] > 0.95
