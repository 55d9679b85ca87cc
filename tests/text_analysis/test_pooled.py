"""Pooled metrics (SPEC 5) against float64 in-memory references on the masked pooled matrix."""

from __future__ import annotations

from functools import reduce
from itertools import pairwise

import numpy as np
import pytest
import scipy.stats
import torch

from tests.support import llm_microscope_function
from tests.text_analysis.support import text_like
from tgo_analysis.kernels import pooling as P
from tgo_analysis.kernels.moments import covariance, merge_moments
from tgo_analysis.kernels.twonn import twonn_dimension
from tgo_store.store import validity as V

RTOL = 1e-6
CUTS = [0, 5, 6, 30, 48]  # uneven sample blocks, one of a single sample


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return text_like()


def chunked_moments(x: np.ndarray, valid: np.ndarray):
    return reduce(merge_moments, [P.pooled_moments(x[a:b], valid[a:b]) for a, b in pairwise(CUTS)])


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_pooled_covariance_equals_np_cov_of_the_masked_points(data, dtype, monkeypatch) -> None:
    monkeypatch.setattr(P, "POINT_ROWS", 37)  # several row slices per block
    x = data["x"].astype(dtype)
    valid = V.valid_positions(data["mask"].shape, data["mask"], data["special"])
    merged = chunked_moments(x, valid)
    ref = np.cov(x[valid].astype(np.float64), rowvar=False)
    assert merged.count == data["mask"].sum()
    np.testing.assert_allclose(covariance(merged), ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


def test_pooled_metrics_match_references(data) -> None:
    from reptrix.alpha import get_powerlaw

    x, valid = data["x"], V.valid_positions(data["mask"].shape, data["mask"])
    points = x[valid]
    got = P.pooled_spectrum_metrics(chunked_moments(x, valid))
    ref = np.clip(np.sort(np.linalg.eigvalsh(np.cov(points, rowvar=False)))[::-1], 0, None)
    np.testing.assert_allclose(got["eigenvalues"], ref, rtol=1e-8, atol=1e-10 * ref[0])
    nz = ref[ref > ref[0] * ref.size * np.finfo(np.float64).eps]
    h = scipy.stats.entropy(nz / nz.sum())
    np.testing.assert_allclose(got["effective_rank"], np.exp(h), rtol=RTOL)
    np.testing.assert_allclose(got["spectral_entropy"], h / np.log(nz.size), rtol=RTOL)
    np.testing.assert_allclose(got["spectral_flatness"], scipy.stats.gmean(nz) / nz.mean(), rtol=RTOL)
    np.testing.assert_allclose(got["participation_ratio"], nz.sum() ** 2 / (nz**2).sum(), rtol=RTOL)
    np.testing.assert_allclose(got["stable_rank"], nz.sum() / nz[0], rtol=RTOL)
    anisotropy = llm_microscope_function("calculate_anisotropy_torch")(torch.from_numpy(points))
    np.testing.assert_allclose(got["top1_share"], anisotropy, rtol=RTOL)
    np.testing.assert_allclose(got["alpha"], get_powerlaw(ref, np.arange(10, 100))[0], rtol=RTOL)


def test_padding_never_enters_and_exclusions_are_honoured(data) -> None:
    mask, special = data["mask"], data["special"]
    shape = mask.shape
    assert not (V.valid_positions(shape, mask, special, V.PositionChoice(True, True)) & ~mask).any()
    no_special = V.valid_positions(shape, mask, special, V.PositionChoice(exclude_special=True))
    np.testing.assert_array_equal(no_special, mask & ~special)
    left = np.fliplr(mask)  # left padding: the first valid position is not position 0
    first = V.valid_positions(shape, left, choice=V.PositionChoice(exclude_first=True))
    expected = left.copy()
    expected[np.arange(shape[0]), left.argmax(axis=1)] = False
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(V.valid_positions(shape), np.ones(shape, bool))  # image stores
    # the massive first position dominates lambda_1; leaving it out lowers the anisotropy
    x = data["x"]
    with_first = P.pooled_spectrum_metrics(chunked_moments(x, mask))["top1_share"]
    without = P.pooled_spectrum_metrics(chunked_moments(x, no_special))["top1_share"]
    assert with_first > 0.5 > without


def test_pooled_cosine_anisotropy_equals_brute_force(data) -> None:
    x, valid = data["x"], data["mask"]
    parts = [P.pooled_unit_sum(x[a:b], valid[a:b]) for a, b in pairwise(CUTS)]
    unit, count = sum(p[0] for p in parts), sum(p[1] for p in parts)
    u = x[valid] / np.linalg.norm(x[valid], axis=1, keepdims=True)
    sims = u @ u.T
    ref = (sims.sum() - np.trace(sims)) / (count * (count - 1))
    np.testing.assert_allclose(P.pooled_cosine_anisotropy(unit, count), ref, rtol=1e-10)


def test_bottom_k_subsample_does_not_depend_on_chunking(data) -> None:
    x, valid, k = data["x"], data["mask"], 200
    samples = np.arange(x.shape[0])
    keys = P.position_keys(samples, (0, x.shape[1]), seed=3)
    whole = P.sample_points(x, valid, keys, k, data["ids"])
    parts = [P.sample_points(x[a:b], valid[a:b], keys[a:b], k, data["ids"][a:b]) for a, b in pairwise(CUTS)]
    merged = reduce(P.merge_point_samples, parts)
    np.testing.assert_array_equal(merged.keys, whole.keys)
    np.testing.assert_array_equal(merged.points, whole.points)
    np.testing.assert_array_equal(merged.labels, whole.labels)
    # reference: the k valid positions with the smallest keys, taken from the full arrays
    flat = np.flatnonzero(valid)
    ref = flat[np.argsort(keys.ravel()[flat])[:k]]
    np.testing.assert_array_equal(whole.points, x.reshape(-1, x.shape[-1])[ref])
    assert (whole.points < 1e3).all()  # no padding
    assert len(np.unique(whole.keys)) == k
    other = P.sample_points(x, valid, P.position_keys(samples, (0, x.shape[1]), seed=4), k)
    assert not np.array_equal(other.keys, whole.keys)
    everything = P.sample_points(x, valid, keys, 10**6)
    assert everything.points.shape[0] == valid.sum()


def test_pooled_twonn_on_the_subsample_matches_scikit_dimension() -> None:
    from skdim.id import TwoNN

    rng = np.random.default_rng(2)
    x = (rng.standard_normal((60, 30, 4)) @ rng.standard_normal((4, 16))).astype(np.float32)
    valid = np.ones(x.shape[:2], bool)
    valid[:, 25:] = False
    keys = P.position_keys(np.arange(60), (0, 30), seed=0)
    sample = P.sample_points(x, valid, keys, 1000)
    ref = TwoNN(discard_fraction=0.1).fit(sample.points.astype(np.float64)).dimension_
    np.testing.assert_allclose(twonn_dimension(sample.points), ref, rtol=1e-6)
    assert abs(ref - 4) < 1.0
