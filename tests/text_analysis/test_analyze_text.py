"""``tgo analyze`` on a text-like store written with plain xarray: the pooled and frequency
groups end to end (results store, coords, attrs), and what ``all`` means per store."""

from __future__ import annotations

import numpy as np
import pytest

from tgo_analysis import names as N
from tgo_analysis.analyze import analyze
from tgo_analysis.results.selection import parse_metrics
from tgo_analysis.results.store import open_results
from tgo_store.errors import TgoError
from tgo_store.store import schema as S
from tgo_store.store import validity as V


def test_pooled_and_frequency_groups_write_every_unit(store, tmp_path) -> None:
    choice = V.PositionChoice(exclude_special=True)
    out = str(tmp_path / "results.zarr")
    result = analyze(store, "pooled,frequency", out=out, progress=False,
                     params={N.POOLED: {"positions": choice, "id_points": 256}, N.FREQUENCY: {"n_buckets": 4}})
    again = open_results(out)  # the nested attrs decoded, as tgo reads them (JSON text on disk, SPEC 9)
    for name in (N.TOP1_SHARE_POOLED, N.EIGENVALUES_POOLED, N.INTRINSIC_DIMENSION_POOLED,
                 N.COSINE_ANISOTROPY_POOLED, N.TOP1_SHARE_BY_FREQUENCY, N.FREQUENCY_CENTROID_SPEARMAN):
        assert name in again and np.isfinite(again[name].values).all(), name
    assert again[N.EIGENVALUES_POOLED].dims == (N.CHECKPOINT, N.LAYER, N.RANK_POOLED)
    assert again[N.TOP1_SHARE_BY_FREQUENCY].dims == (N.CHECKPOINT, N.LAYER, N.FREQUENCY_BUCKET)
    assert (again[N.FREQUENCY_HIGH].values > again[N.FREQUENCY_LOW].values).all()
    np.testing.assert_array_equal(again[N.RANK_POOLED].values, np.arange(1, store.sizes[S.FEATURE] + 1))
    assert again.attrs["pooled_exclude_special"] is True and again.attrs["pooled_exclude_first"] is False
    mask, special = store[S.ATTENTION_MASK].values, store[S.TOKEN_SPECIAL].values
    valid = V.valid_positions(mask.shape, mask, special, choice)
    for ci in range(2):
        for li in range(2):
            points = np.asarray(store[S.ACTIVATIONS][ci, li].values, dtype=np.float64)[valid]
            lam = np.linalg.eigvalsh(np.cov(points, rowvar=False))
            np.testing.assert_allclose(result[N.TOP1_SHARE_POOLED][ci, li], lam.max() / lam.sum(), rtol=1e-6)
            np.testing.assert_allclose(again[N.TOP1_SHARE_POOLED][ci, li], lam.max() / lam.sum(), rtol=1e-6)


def test_all_includes_frequency_only_for_stores_that_support_it(store) -> None:
    images = store[[S.ACTIVATIONS]].drop_vars([S.TOKEN_ID, S.ATTENTION_MASK, S.TOKEN_SPECIAL])
    text_all, image_all = parse_metrics("all", store), parse_metrics("all", images)
    assert N.POOLED in text_all and N.FREQUENCY in text_all
    assert N.POOLED in image_all and N.FREQUENCY not in image_all
    with pytest.raises(TgoError, match="vocab_count"):
        analyze(images, "frequency", progress=False)
    pooled = analyze(images, N.TOP1_SHARE_POOLED, progress=False)  # images: every patch token a point
    assert np.isfinite(pooled[N.TOP1_SHARE_POOLED].values).all()


def test_cli_exclusions_reach_the_results(store, tmp_path) -> None:
    from tgo_app.cli import main

    out = str(tmp_path / "cli.zarr")
    try:
        main(["analyze", store.encoding["source"], "--out", out, "--metrics", N.TOP1_SHARE_POOLED,
              "--exclude-special", "--exclude-first", "--quiet"])
    except SystemExit as done:
        assert done.code in (0, None)
    attrs = open_results(out).attrs  # nested attrs are JSON text on disk (SPEC 9); tgo reads them back
    assert attrs["pooled_exclude_special"] is True and attrs["pooled_exclude_first"] is True
