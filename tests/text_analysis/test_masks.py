"""Padding never enters a per-position reduction (SPEC 5, issue 18 item 8).

One padded store twice: huge random junk at the padded positions, and zeros there. Every
per-token metric, the token correlations (plain and centred), intrinsic dimension and the
all-tokens spectrum must agree between the two, and equal a float64 reference computed over
valid samples only. A store whose mask is all true gives bit for bit what the same store
without a mask gives (the unmasked fast path), and the torch backend folds padding as numpy does.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.analyze import analyze
from tgo_analysis.kernels.twonn import twonn_dimension
from tgo_store.store import schema as S

PER_TOKEN = "eigenvalues,effective_rank,top1_share,stable_rank,cosine_anisotropy,mean_norm"
WHOLE = "token_correlation,token_correlation_centred,intrinsic_dimension,all_tokens"


def padded(junk: bool, n: int = 48, t: int = 6, d: int = 10, seed: int = 0) -> tuple[xr.Dataset, np.ndarray]:
    """(1, 1, n, t, d) float32 with a shared per-feature mean profile; the first 8 samples are
    full length (the first block folds unmasked), the rest have 1..t valid positions."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, t, d)) * np.linspace(2.0, 0.2, d) + np.linspace(-3, 3, d)
    lengths = np.concatenate([np.full(8, t), rng.integers(1, t + 1, size=n - 8)])
    lengths[8:12] = t  # enough full samples for intrinsic_dimension
    mask = np.arange(t)[None, :] < lengths[:, None]
    x[~mask] = rng.standard_normal(x[~mask].shape) * 1e6 if junk else 0.0
    ds = xr.Dataset({S.ACTIVATIONS: (S.DIMS, x[None, None].astype(np.float32))},
                    coords={S.ATTENTION_MASK: ((S.SAMPLE, S.TOKEN), mask)}).chunk({S.SAMPLE: 8})
    return ds, mask


def run(ds: xr.Dataset, metrics: str, **kw) -> xr.Dataset:
    return analyze(ds, metrics, progress=False, id_samples=100, **kw)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_padded_junk_changes_no_per_position_metric() -> None:
    (junk, mask), (zeros, _) = padded(True), padded(False)
    a, b = run(junk, f"{PER_TOKEN},{WHOLE}"), run(zeros, f"{PER_TOKEN},{WHOLE}")
    x = np.asarray(zeros[S.ACTIVATIONS].values[0, 0], dtype=np.float64)
    names = [N.EIGENVALUES, N.EFFECTIVE_RANK, N.TOP1_SHARE, N.COSINE_ANISOTROPY, N.MEAN_NORM, N.TOKEN_CORRELATION,
             N.TOKEN_CORRELATION_CENTRED, N.MEAN_TOKEN_CORRELATION_CENTRED, N.INTRINSIC_DIMENSION,
             N.all_tokens(N.EIGENVALUES)]
    for name in names:
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-9, atol=1e-12, err_msg=name)
    t = x.shape[1]
    for k in range(t):
        rows = x[mask[:, k], k]
        lam = np.sort(np.linalg.eigvalsh(np.cov(rows, rowvar=False)))[::-1]
        np.testing.assert_allclose(a[N.EIGENVALUES].values[0, 0, k, :lam.size], lam, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(a[N.TOP1_SHARE].values[0, 0, k], lam[0] / lam.sum(), rtol=1e-6)
        units = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        cos = units @ units.T
        m = rows.shape[0]
        np.testing.assert_allclose(a[N.COSINE_ANISOTROPY].values[0, 0, k], (cos.sum() - m) / (m * (m - 1)),
                                   rtol=1e-6)
    means = np.array([x[mask[:, k], k].mean(axis=0) for k in range(t)])
    for k in range(t):
        for u in range(t):
            both = mask[:, k] & mask[:, u]
            ref = pearson(x[both, k], x[both, u])
            np.testing.assert_allclose(a[N.TOKEN_CORRELATION].values[0, 0, k, u], ref, rtol=1e-6, atol=1e-9)
            ref_c = pearson(x[both, k] - means[k], x[both, u] - means[u])
            np.testing.assert_allclose(a[N.TOKEN_CORRELATION_CENTRED].values[0, 0, k, u], ref_c, rtol=1e-6,
                                       atol=1e-9)
    full = mask.all(axis=1)
    np.testing.assert_allclose(a[N.INTRINSIC_DIMENSION].values[0, 0], twonn_dimension(x[full].reshape(full.sum(), -1)),
                               rtol=1e-9)
    flat = np.where(mask[..., None], x, 0.0).reshape(x.shape[0], -1)
    lam = np.sort(np.linalg.eigvalsh(np.cov(flat, rowvar=False)))[::-1][:x.shape[0]]
    np.testing.assert_allclose(a[N.all_tokens(N.EIGENVALUES)].values[0, 0, :lam.size], lam, rtol=1e-6, atol=1e-8)


def test_a_token_with_one_valid_sample_is_nan_with_its_reason() -> None:
    ds, mask = padded(True)
    mask = mask.copy()
    mask[1:, -1] = False  # only sample 0 is valid at the last token
    ds = ds.assign_coords({S.ATTENTION_MASK: ((S.SAMPLE, S.TOKEN), mask)})
    out = run(ds, "effective_rank,cosine_anisotropy")
    assert np.isnan(out[N.EFFECTIVE_RANK].values[0, 0, -1]) and np.isnan(out[N.COSINE_ANISOTROPY].values[0, 0, -1])
    assert out[N.METRIC_REASON].values[0, 0, -1] == 4
    assert np.isfinite(out[N.EFFECTIVE_RANK].values[0, 0, :-1]).all()


def test_all_true_mask_is_the_unmasked_fast_path_bit_for_bit() -> None:
    ds, _ = padded(False)
    ds = ds.assign_coords({S.ATTENTION_MASK: ((S.SAMPLE, S.TOKEN), np.ones(ds[S.ATTENTION_MASK].shape, bool))})
    bare = ds.drop_vars(S.ATTENTION_MASK)
    a, b = run(ds, f"{PER_TOKEN},{WHOLE}"), run(bare, f"{PER_TOKEN},{WHOLE}")
    for name in (N.EIGENVALUES, N.EFFECTIVE_RANK, N.COSINE_ANISOTROPY, N.TOKEN_CORRELATION,
                 N.TOKEN_CORRELATION_CENTRED, N.INTRINSIC_DIMENSION, N.all_tokens(N.EIGENVALUES)):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_torch_backend_folds_padding_as_numpy_does() -> None:
    pytest.importorskip("torch")
    ds, _ = padded(True)
    a, b = run(ds, "eigenvalues,effective_rank"), run(ds, "eigenvalues,effective_rank", device="torch:cpu")
    np.testing.assert_allclose(a[N.EIGENVALUES].values, b[N.EIGENVALUES].values, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(a[N.EFFECTIVE_RANK].values, b[N.EFFECTIVE_RANK].values, rtol=1e-9)
