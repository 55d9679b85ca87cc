"""The language section of the report on a fake results set with the SPEC section 5 names."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import xarray as xr

from tests.report.conftest import make_fake_results
from tests.report.test_report import INLINE_PNG
from tgo_analysis import names as N
from tgo_analysis.report import LANGUAGE_SECTIONS, SECTIONS, write_report
from tgo_analysis.report import language as L


def fake_language_results(steps=(0, 10, 100), n_layers: int = 5, d: int = 64, exclude: bool = False) -> xr.Dataset:
    rng = np.random.default_rng(1)
    c, cl = len(steps), ("checkpoint", "layer")
    alpha = rng.uniform(0.8, 1.6, (c, n_layers))
    eigs = np.arange(1, d + 1) ** -alpha[..., None]
    edges = np.array([1, 3, 10, 40, 200, 1001])
    b = edges.size - 1
    clb = (*cl, N.FREQUENCY_BUCKET)
    data = {
        N.EIGENVALUES_POOLED: ((*cl, N.RANK_POOLED), eigs),
        N.pooled(N.ALPHA): (cl, alpha),
        N.TOP1_SHARE_POOLED: (cl, eigs[..., 0] / eigs.sum(-1)),
        N.COSINE_ANISOTROPY_POOLED: (cl, rng.uniform(0.1, 0.9, (c, n_layers))),
        N.INTRINSIC_DIMENSION_POOLED: (cl, rng.uniform(5, 30, (c, n_layers))),
        N.TOP1_SHARE_BY_FREQUENCY: (clb, rng.uniform(0.05, 0.6, (c, n_layers, b))),
        N.EFFECTIVE_RANK_BY_FREQUENCY: (clb, rng.uniform(5, 50, (c, n_layers, b))),
        N.MEAN_NORM_BY_FREQUENCY: (clb, rng.uniform(1, 9, (c, n_layers, b))),
        N.CENTROID_DISTANCE_BY_FREQUENCY: (clb, rng.uniform(1, 9, (c, n_layers, b))),
        N.FREQUENCY_CENTROID_SPEARMAN: (cl, rng.uniform(-0.7, 0.1, (c, n_layers))),
    }
    coords = {N.CHECKPOINT: np.array(steps, dtype=np.int64), N.LAYER: np.arange(n_layers),
              N.RANK_POOLED: np.arange(1, d + 1), N.FREQUENCY_BUCKET: np.arange(b),
              N.FREQUENCY_LOW: (N.FREQUENCY_BUCKET, edges[:-1]), N.FREQUENCY_HIGH: (N.FREQUENCY_BUCKET, edges[1:])}
    attrs = {"alpha_fit_range": [11, 100], "pooled_exclude_special": exclude, "pooled_exclude_first": exclude}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def images(html: str) -> dict[str, bytes]:
    return {alt: base64.b64decode(data) for alt, data in INLINE_PNG.findall(html)}


def test_every_language_figure_is_drawn_for_language_results(tmp_path) -> None:
    from tgo_app.cli import main

    here, other = tmp_path / "here.zarr", tmp_path / "other.zarr"
    fake_language_results().to_zarr(here, zarr_format=3, consolidated=False)
    fake_language_results(exclude=True).to_zarr(other, zarr_format=3, consolidated=False)
    try:
        main(["report", str(here), "--out", str(tmp_path / "r"), "--compare", f"no first={other}"])
    except SystemExit as done:
        assert done.code in (0, None)
    text = (tmp_path / "r" / "index.html").read_text()
    drawn = images(text)
    for section in LANGUAGE_SECTIONS:
        assert drawn[section.heading].startswith(b"\x89PNG"), section.key
        assert (tmp_path / "r" / f"{section.key}.png").exists()


def test_a_bad_compare_is_one_line() -> None:
    from tgo_analysis.report import parse_compare
    from tgo_store.errors import TgoError

    assert parse_compare(["a=x.zarr", " b = s3://y "]) == {"a": "x.zarr", "b": "s3://y"}
    with pytest.raises(TgoError, match="LABEL=RESULTS"):
        parse_compare(["x.zarr"])


def test_image_results_get_no_language_section(tmp_path) -> None:
    text = write_report(make_fake_results()[[N.INTRINSIC_DIMENSION]], tmp_path / "r").read_text()
    assert set(images(text)) <= {s.heading for s in SECTIONS}
    assert not any(s.heading in text for s in LANGUAGE_SECTIONS)


def test_anisotropy_columns_and_lines_are_the_stored_values() -> None:
    res, other = fake_language_results(), fake_language_results(exclude=True)
    fig = L.pooled_anisotropy(res, {"without": other})
    axes = fig.axes
    assert len(axes) == 4  # 2 metrics x 2 results sets
    assert "all valid positions" in axes[0].get_title() and "without special & first" in axes[1].get_title()
    for ci, line in enumerate(axes[0].get_lines()):
        np.testing.assert_array_equal(line.get_ydata(), res[N.TOP1_SHARE_POOLED].isel(checkpoint=ci).values)
    assert L.pooled_anisotropy(res.drop_vars(N.TOP1_SHARE_POOLED)) is None


def test_frequency_lines_sit_at_bucket_centres() -> None:
    res = fake_language_results()
    fig = L.frequency_profiles(res)
    line = fig.axes[0].get_lines()[2]
    np.testing.assert_allclose(line.get_xdata(), np.sqrt([1 * 2, 3 * 9, 10 * 39, 40 * 199, 200 * 1000]))
    np.testing.assert_array_equal(line.get_ydata(), res[N.TOP1_SHARE_BY_FREQUENCY].isel(checkpoint=-1, layer=2))
    assert L.frequency_profiles(res.drop_vars([*L.FREQUENCY_LABELS, N.FREQUENCY_CENTROID_SPEARMAN])) is None


@pytest.mark.parametrize("steps", [(0, 10, 100), (100,)])
def test_training_dynamics_needs_two_checkpoints(steps) -> None:
    fig = L.pooled_training_dynamics(fake_language_results(steps=steps))
    assert (fig is None) == (len(steps) < 2)


def test_captions_fit_the_store_they_describe() -> None:
    """A text report never speaks of images and a CLS token; an image report does."""
    sections = {s.key: s for s in SECTIONS}
    text, image = fake_language_results(), make_fake_results()
    for key in ("training", "alpha"):
        caption = sections[key].caption_for(text)
        assert "image" not in caption and "CLS" not in caption, caption
    assert "every image" in sections["alpha"].caption_for(image)
    assert "accuracy" in sections["training"].caption_for(image)
    assert "loss" in sections["training"].caption_for(text)
