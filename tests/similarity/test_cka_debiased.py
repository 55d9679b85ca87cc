"""SPEC 8 CKA: debiased CKA against the unbiased-HSIC formula on full Gram matrices, and `all` on padded stores."""

from __future__ import annotations

import numpy as np
import xarray as xr

import tgo_analysis
from tests.similarity.test_cka import dataset, gram_cka, related_layers, vectors

TOL = 1e-6


def zeroed_gram(x: np.ndarray) -> np.ndarray:
    """The un-centred linear Gram matrix X Xᵀ with its diagonal zeroed."""
    k = x @ x.T
    np.fill_diagonal(k, 0.0)
    return k


def hsic1(k: np.ndarray, m: np.ndarray) -> float:
    """Unbiased HSIC (Song et al. 2012) of two zeroed-diagonal Gram matrices: what cka-pytorch's hsic1
    computes on one batch of all N, eps = 0 (written out here, float64)."""
    n = k.shape[0]
    ones = np.ones(n)
    value = np.trace(k @ m) + (ones @ k @ ones) * (ones @ m @ ones) / ((n - 1) * (n - 2)) \
        - 2.0 / (n - 2) * (ones @ k @ (m @ ones))
    return float(value / (n * (n - 3)))


def debiased_reference(x: np.ndarray, y: np.ndarray) -> float:
    k, m = zeroed_gram(x), zeroed_gram(y)
    return hsic1(k, m) / np.sqrt(hsic1(k, k) * hsic1(m, m))


def reference_table(grams: dict) -> dict:
    """Debiased CKA of every pair of zeroed-diagonal Gram matrices, by key pair."""
    own = {key: hsic1(k, k) for key, k in grams.items()}
    return {(p, q): hsic1(grams[p], grams[q]) / np.sqrt(own[p] * own[q]) for p in grams for q in grams}


def test_debiased_cka_equals_the_unbiased_hsic_formula_for_every_representation() -> None:
    x = related_layers(n=150, t=4, d=6, seed=7, checkpoints=2)
    x[:, 2] += 40.0  # a far-off mean: the streamed sums are taken about a shift, nothing cancels
    reps = ("mean", "cls", "token:2", "all")
    ds = dataset(x, cls=True)
    res = tgo_analysis.analyze(ds, "similarity", progress=False, representations=",".join(reps))
    layers, checkpoints = res.cka_layers_debiased.values, res.cka_checkpoints_debiased.values
    for r, rep in enumerate(reps):
        grams = {(c, a): zeroed_gram(vectors(x[c, a], rep, None)) for c in range(2) for a in range(4)}
        table = reference_table(grams)
        for c in range(2):
            for a in range(4):
                for b in range(4):
                    assert abs(layers[c, a, b, r] - table[(c, a), (c, b)]) < TOL, (rep, c, a, b)
                assert abs(checkpoints[c, a, r] - table[(c, a), (1, a)]) < TOL, (rep, c, a)
    np.testing.assert_allclose(layers[:, 0, 1], 1.0, atol=1e-6)  # 3·XQ: orthogonal map and scale
    assert np.abs(layers[:, 0, 3]).max() < 0.1  # independent layers: about 0
    assert "cka_debiased" in res.attrs


def test_debiased_is_about_zero_for_independent_white_noise_where_biased_is_not() -> None:
    x = np.random.default_rng(3).standard_normal((1, 2, 120, 16, 16)).astype(np.float32)  # 256 features/token set
    res = tgo_analysis.analyze(dataset(x, chunk=50), "cka_layers", progress=False, representations="mean,all")
    biased, debiased = res.cka_layers.values[0, 0, 1], res.cka_layers_debiased.values[0, 0, 1]
    assert biased[1] > 0.5  # all: 256 features per sample against 120 samples
    assert np.abs(debiased).max() < 0.05, debiased


def test_padded_all_uses_only_positions_valid_everywhere() -> None:
    """Independent layers with right padding read the same `all` as without the padded positions, and
    X vs X + 5 reads 1; zero-filled padding would have made them look alike."""
    rng = np.random.default_rng(11)
    n, t, d = 400, 8, 4
    x = (rng.standard_normal((1, 3, n, t, d)) + 3.0).astype(np.float32)  # activations have a mean, padding is 0
    x[0, 2] = x[0, 0] + 5.0
    lengths = rng.integers(5, t + 1, n)
    lengths[0] = 5
    mask = np.arange(t)[None, :] < lengths[:, None]
    padded = x.copy()
    padded[:, :, ~mask] = 0.0
    res = tgo_analysis.analyze(dataset(padded, mask, chunk=100), "cka_layers", progress=False, representations="all")
    whole = tgo_analysis.analyze(dataset(x, chunk=100), "cka_layers", progress=False, representations="all")
    assert res.attrs["cka_all_tokens"] == [0, 1, 2, 3, 4]
    got, debiased = res.cka_layers.values[0, :, :, 0], res.cka_layers_debiased.values[0, :, :, 0]
    assert abs(got[0, 1] - whole.cka_layers.values[0, 0, 1, 0]) < 0.05
    assert abs(debiased[0, 1] - whole.cka_layers_debiased.values[0, 0, 1, 0]) < 0.05
    np.testing.assert_allclose([got[0, 2], debiased[0, 2]], 1.0, atol=1e-6)
    common = x[0, :, :, :5].reshape(3, n, -1).astype(np.float64)
    assert abs(got[0, 1] - gram_cka(common[0], common[1])) < 1e-9
    assert abs(debiased[0, 1] - debiased_reference(common[0], common[1])) < TOL
    zero_filled = padded[0].reshape(3, n, -1).astype(np.float64)  # the rule this replaces
    assert gram_cka(zero_filled[0], zero_filled[1]) - whole.cka_layers.values[0, 0, 1, 0] > 0.1
    assert gram_cka(zero_filled[0], zero_filled[2]) < 0.99


def test_debiased_rows_come_with_the_biased_ones_and_alone_by_name() -> None:
    ds = dataset(related_layers(checkpoints=2))
    both = tgo_analysis.analyze(ds, "cka_layers", progress=False, representations="mean")
    assert {"cka_layers", "cka_layers_debiased"} <= set(both.data_vars)
    alone = tgo_analysis.analyze(ds, "cka_checkpoints_debiased", progress=False, representations="mean")
    assert "cka_checkpoints_debiased" in alone.data_vars and "cka_checkpoints" not in alone.data_vars
    assert set(alone.cka_checkpoints_debiased.dims) == {"checkpoint", "layer", "representation"}
    assert both.cka_layers_debiased.dims == both.cka_layers.dims


def test_no_position_valid_everywhere_leaves_all_out_with_the_reason() -> None:
    x = related_layers(n=60, t=3, d=4)
    mask = np.ones((60, 3), bool)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = False
    res = tgo_analysis.analyze(dataset(x, mask), "cka_layers", progress=False, representations="mean,all")
    assert list(res.representation.values) == ["mean"]
    assert "no token position is valid" in res.attrs["cka_all_absent"]
    assert isinstance(res, xr.Dataset)
