"""The gradient / tangent-proxy section of the report on a fake results set with the SPEC 5 names."""

from __future__ import annotations

import base64
import html

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from tests.report.conftest import make_fake_results
from tests.report.test_report import INLINE_PNG
from tgo_analysis import names as N
from tgo_analysis.report import TANGENT_SECTIONS, write_report
from tgo_analysis.report import tangent as T

R, D, DRAWS = 4, 32, 16
EDGES = np.array([1, 2, 5, 20, 100, 20001])


def fake_tangent_results(steps=(0, 10, 100), n_layers: int = 5) -> xr.Dataset:
    """Every SPEC 5 tangent variable with its dims, coords and the r / D attr."""
    rng = np.random.default_rng(2)
    c, cl, b = len(steps), (N.CHECKPOINT, N.LAYER), EDGES.size - 1
    control = rng.uniform(0.8, 1.2, (c, n_layers, DRAWS)) * R / D
    tangent = rng.uniform(1.0, 3.0, (c, n_layers)) * R / D
    data = {
        N.TANGENT_ENERGY: (cl, tangent),
        N.CONTROL_ENERGY: ((*cl, N.CONTROL_DRAW), control),
        N.TANGENT_ENRICHMENT: (cl, tangent / control.mean(-1)),
        N.TANGENT_ALIGNMENT: (cl, rng.uniform(0.2, 0.9, (c, n_layers))),
        N.CONTROL_ALIGNMENT: (cl, rng.uniform(0.05, 0.2, (c, n_layers))),
        N.TANGENT_ENRICHMENT_BY_FREQUENCY: ((*cl, N.FREQUENCY_BUCKET), rng.uniform(0.8, 4, (c, n_layers, b))),
    }
    coords = {N.CHECKPOINT: np.array(steps, dtype=np.int64), N.LAYER: np.arange(n_layers),
              N.CONTROL_DRAW: np.arange(DRAWS), N.FREQUENCY_BUCKET: np.arange(b),
              N.FREQUENCY_LOW: (N.FREQUENCY_BUCKET, EDGES[:-1]), N.FREQUENCY_HIGH: (N.FREQUENCY_BUCKET, EDGES[1:])}
    return xr.Dataset(data, coords=coords, attrs={N.TANGENT_ISOTROPIC: R / D, "tangent_rank": R})


def images(text: str) -> dict[str, bytes]:
    return {alt: base64.b64decode(data) for alt, data in INLINE_PNG.findall(text)}


def test_every_tangent_figure_is_drawn_inline_and_beside_the_page(tmp_path) -> None:
    url = tmp_path / "metrics.zarr"
    fake_tangent_results().to_zarr(url, zarr_format=3, consolidated=False)
    text = write_report(str(url), tmp_path / "r").read_text()
    assert text.startswith("<!doctype html>") and text.endswith("</body></html>")
    drawn = images(text)
    for section in TANGENT_SECTIONS:
        assert drawn[section.heading].startswith(b"\x89PNG"), section.key
        assert (tmp_path / "r" / f"{section.key}.png").read_bytes() == drawn[section.heading]
    assert html.escape("Revisiting Anisotropy in Language Transformers") in text  # the explanation
    assert "tangent_isotropic_expectation" in text  # provenance table shows r / D


def test_results_without_tangent_variables_get_no_tangent_section(tmp_path) -> None:
    out = tmp_path / "r"
    write_report(fake_tangent_results(), out)  # a stale tangent figure from a past run...
    text = write_report(make_fake_results()[[N.INTRINSIC_DIMENSION]], out).read_text()
    for section in TANGENT_SECTIONS:
        assert section.heading not in text
        assert not (out / f"{section.key}.png").exists()  # ...is not left beside the new page


def test_a_missing_variable_skips_only_its_figure(tmp_path) -> None:
    res = fake_tangent_results().drop_vars([N.TANGENT_ENRICHMENT_BY_FREQUENCY, N.FREQUENCY_LOW,
                                            N.FREQUENCY_HIGH])
    text = write_report(res, tmp_path / "r").read_text()
    drawn = images(text)
    by_key = {s.key: s.heading for s in TANGENT_SECTIONS}
    assert by_key["tangent_layers"] in drawn and by_key["tangent_training"] in drawn
    assert by_key["tangent_frequency"] not in drawn and by_key["tangent_frequency"] in text  # "not shown"


def test_one_checkpoint_has_no_training_figure() -> None:
    res = fake_tangent_results(steps=(7,))
    assert T.over_training(res) is None
    assert T.across_layers(res) is not None and T.by_frequency(res) is not None
    assert T.across_layers(fake_tangent_results()[[N.CONTROL_ENERGY]]) is None


def test_control_band_is_the_spread_of_each_draws_enrichment() -> None:
    res = fake_tangent_results()
    energies = res[N.CONTROL_ENERGY].values.astype(np.float64)
    ratio = energies / energies.mean(axis=-1, keepdims=True)
    expected = np.quantile(ratio, T.BAND, axis=-1)
    band = T.control_band(res)
    np.testing.assert_allclose(band.values, expected, rtol=1e-12)
    assert (band.values[0] < 1).all() and (band.values[1] > 1).all()
    assert T.control_band(res.drop_vars(N.CONTROL_ENERGY)) is None


def _horizontal_lines(ax) -> set[float]:
    return {round(float(line.get_ydata()[0]), 9) for line in ax.get_lines()
            if len(set(np.atleast_1d(line.get_ydata()).tolist())) == 1 and line.get_xdata()[0] == 0
            and line.get_xdata()[-1] == 1}


@pytest.mark.parametrize("draw", [T.across_layers, T.over_training])
def test_lines_are_the_stored_values_with_isotropic_references(draw) -> None:
    res = fake_tangent_results()
    fig = draw(res)
    enrichment_ax, alignment_ax = fig.axes[:2]
    assert 1.0 in _horizontal_lines(enrichment_ax)
    assert round(R / D, 9) in _horizontal_lines(alignment_ax)
    stored = res[N.TANGENT_ENRICHMENT].values
    plotted = [line.get_ydata() for line in enrichment_ax.get_lines() if len(line.get_ydata()) > 2]
    for values in plotted:
        assert any(row.size == values.size and np.allclose(values, row) for row in (*stored, *stored.T))
    assert len(enrichment_ax.collections) == len(plotted)  # one control band per line
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]  # colours, then line styles
    assert any("controls" in label for label in labels) and any("r/D" in label for label in labels)
    plt.close(fig)


def test_without_the_attr_the_alignment_has_no_invented_reference() -> None:
    res = fake_tangent_results()
    res.attrs.pop(N.TANGENT_ISOTROPIC)
    fig = T.across_layers(res)
    assert _horizontal_lines(fig.axes[1]) == set()
    plt.close(fig)


def test_frequency_axis_is_labelled_with_the_bucket_ranges() -> None:
    res = fake_tangent_results()
    assert T.bucket_labels(res) == ["1", "2–4", "5–19", "20–99", "100–20k"]
    fig = T.by_frequency(res)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == T.bucket_labels(res)
    assert len(fig.axes) == min(res.sizes[N.LAYER], T.MAX_FREQUENCY_PANELS)
    plt.close(fig)


def fake_full_results(steps=(0, 10, 100), n_layers: int = 5) -> xr.Dataset:
    """fake_tangent_results plus the baselines, the local test and the intervals of SPEC 5."""
    res = fake_tangent_results(steps, n_layers)
    rng = np.random.default_rng(3)
    c, cl = len(steps), (N.CHECKPOINT, N.LAYER)
    vs_pca = rng.uniform(0.6, 1.6, (c, n_layers))
    local = rng.uniform(0.3, 0.6, (c, n_layers))
    for name, values in ((N.PCA_ENERGY, res[N.TANGENT_ENERGY].values / vs_pca), (N.TANGENT_ENRICHMENT_VS_PCA, vs_pca),
                         (N.OPTIMAL_ENERGY, np.full((c, n_layers), 0.9)), (N.ACTIVATION_ENERGY, rng.uniform(0.5, 0.9, (c, n_layers))),
                         (N.TANGENT_ALIGNMENT_WEIGHTED, rng.uniform(0.2, 0.9, (c, n_layers))),
                         (N.LOCAL_TANGENT_ENERGY, local), (N.LOCAL_TANGENT_NULL, local - 0.1),
                         (N.LOCAL_TANGENT_EXCESS, np.full((c, n_layers), 0.1)),
                         (N.RADIAL_ENERGY, rng.uniform(0, 0.2, (c, n_layers))),
                         (N.RADIAL_NULL, rng.uniform(0, 0.2, (c, n_layers)))):
        res[name] = (cl, values)
    for name, point in ((N.TANGENT_ENERGY_CI, N.TANGENT_ENERGY), (N.TANGENT_ENRICHMENT_VS_PCA_CI, N.TANGENT_ENRICHMENT_VS_PCA),
                        (N.LOCAL_TANGENT_ENERGY_CI, N.LOCAL_TANGENT_ENERGY),
                        (N.LOCAL_TANGENT_NULL_CI, N.LOCAL_TANGENT_NULL),
                        (N.LOCAL_TANGENT_EXCESS_CI, N.LOCAL_TANGENT_EXCESS)):
        p = res[point].values
        res[name] = ((*cl, N.BOUND), np.stack([p - 0.05, p + 0.05], axis=-1))
    res[N.TANGENT_ENRICHMENT_VS_PCA_BY_FREQUENCY] = ((*cl, N.FREQUENCY_BUCKET),
                                                     rng.uniform(0.5, 2, res[N.TANGENT_ENRICHMENT_BY_FREQUENCY].shape))
    res[N.TANGENT_METRIC_REASON] = (cl, np.zeros((c, n_layers), np.int8))
    res = res.assign_coords({N.BOUND: ["low", "high"]})
    res.attrs["tangent_frequency_count"] = 64
    res.attrs["tangent_pca"] = "Q_P = top-r right singular vectors of the same un-centred fit-split subsample"
    return res


def _curves(ax) -> list[np.ndarray]:
    return [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines() if len(line.get_ydata()) > 2]


def _holds(curves, rows) -> bool:
    return all(any(c.size == r.size and np.allclose(c, r) for c in curves) for r in rows)


def test_every_tangent_curve_is_drawn_beside_its_baselines_and_intervals() -> None:
    res = fake_full_results()
    fig = T.across_layers(res)
    enrichment, alignment, energies, local = fig.axes[:4]
    assert _holds(_curves(enrichment), res[N.TANGENT_ENRICHMENT_VS_PCA].values)  # PCA baseline beside E_T / E_N
    assert _holds(_curves(energies), res[N.PCA_ENERGY].values) and _holds(_curves(energies), res[N.OPTIMAL_ENERGY].values)
    assert _holds(_curves(local), res[N.LOCAL_TANGENT_NULL].values)  # the null beside every local curve
    assert _holds(_curves(local), res[N.LOCAL_TANGENT_ENERGY].values)
    assert _holds(_curves(local), res[N.RADIAL_NULL].values)  # the radial share beside its null
    assert _holds(_curves(alignment), res[N.TANGENT_ALIGNMENT_WEIGHTED].values)
    # bands: per checkpoint, control spread and the E_T / E_PCA interval; E_T interval; local and null intervals
    assert len(enrichment.collections) == 2 * res.sizes[N.CHECKPOINT]
    assert len(energies.collections) == res.sizes[N.CHECKPOINT]
    assert len(local.collections) == 2 * res.sizes[N.CHECKPOINT]  # the local and the null intervals
    band = local.collections[0].get_paths()[0].vertices[:, 1]
    ci = res[N.LOCAL_TANGENT_ENERGY_CI].isel(checkpoint=0).values
    assert np.isclose(band.min(), ci[:, 0].min()) and np.isclose(band.max(), ci[:, 1].max())
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]  # colours, then line styles
    assert any("PCA" in label for label in labels) and any("null" in label for label in labels)
    assert any("bootstrap" in label for label in labels)
    plt.close(fig)
    fig = T.by_frequency(res)
    assert _holds(_curves(fig.axes[0]), res[N.TANGENT_ENRICHMENT_VS_PCA_BY_FREQUENCY].isel(layer=0).values)
    plt.close(fig)


def test_the_sentence_under_each_figure_reads_the_numbers() -> None:
    res = fake_full_results(n_layers=4)
    vs = np.array([[1.5, 0.5, 1.3, 1.0]] * 3)
    res[N.TANGENT_ENRICHMENT_VS_PCA] = ((N.CHECKPOINT, N.LAYER), vs)
    res[N.TANGENT_ENRICHMENT_VS_PCA_CI] = ((N.CHECKPOINT, N.LAYER, N.BOUND), np.stack([vs - 0.1, vs + 0.1], -1))
    text = T.reading_layers(res)
    assert "layers 0, 2 (2 of 4)" in text and "layer 1 (1 of 4)" in text  # above / below 1
    assert "not evidence of tangency" in text
    res[N.TANGENT_METRIC_REASON] = ((N.CHECKPOINT, N.LAYER), np.array([[0, 0, 0, 1]] * 3, np.int8))
    assert "did not converge at layer 3" in T.reading_layers(res)
    # "above its null" only where the paired excess interval excludes 0, whatever local and null read
    excess = np.array([[0.2, 0.02, -0.1, 0.3]] * 3)
    res[N.LOCAL_TANGENT_EXCESS_CI] = ((N.CHECKPOINT, N.LAYER, N.BOUND), np.stack([excess - 0.05, excess + 0.05], -1))
    assert "above its null (interval of local − null above 0) at layers 0, 3 (2 of 4)" in T.reading_layers(res)
    assert "no layer is called above its null" in T.reading_layers(res.drop_vars(N.LOCAL_TANGENT_EXCESS_CI))
    assert "predate the matched-centring" not in T.reading_layers(res)
    old = res.copy()
    old.attrs["tangent_pca"] = "Q_P = top-r eigenvectors of the centred covariance of the same fit-split subsample"
    assert "predate the matched-centring" in T.reading_layers(old)
    bare = res.drop_vars([N.TANGENT_ENRICHMENT_VS_PCA, N.TANGENT_ENRICHMENT_VS_PCA_CI])
    assert "no PCA baseline" in T.reading_layers(bare)
    assert "64" in T.reading_frequency(res) and "not evidence" in T.reading_frequency(res)
    assert "activations got more anisotropic" in T.reading_training(res)
    assert T.reading_training(res.isel(checkpoint=[0])) is None


def test_the_page_prints_each_reading_under_its_figure(tmp_path) -> None:
    text = write_report(fake_full_results(), tmp_path / "r").read_text()
    for section in TANGENT_SECTIONS:
        start = text.index(f"<h2 id='{section.key}'>")
        chunk = text[start: text.find("<h2", start + 1)]
        assert chunk.index("<img") < chunk.index("class='reading'>What this supports"), section.key


def test_text_headline_reads_the_baselines_beside_the_enrichment() -> None:
    from tgo_app.demos.text import TEXT_HEADLINE_COLUMNS, text_headline_rows

    res = fake_full_results(n_layers=4)
    vs = np.array([[1.5, 0.5, 1.3, 1.0]] * 3)
    res[N.TANGENT_ENRICHMENT_VS_PCA] = ((N.CHECKPOINT, N.LAYER), vs)
    res[N.TANGENT_ENRICHMENT_VS_PCA_CI] = ((N.CHECKPOINT, N.LAYER, N.BOUND), np.stack([vs - 0.1, vs + 0.1], -1))
    reason = np.zeros((3, 4), np.int8)
    reason[2, 1] = 1
    res[N.TANGENT_METRIC_REASON] = ((N.CHECKPOINT, N.LAYER), reason)
    rows = text_headline_rows(res, {})
    assert all(len(r) == len(TEXT_HEADLINE_COLUMNS) for r in rows)
    column = {name: i for i, name in enumerate(TEXT_HEADLINE_COLUMNS)}
    pca = rows[0][column["E_T/E_PCA (CI>1)"]]
    assert pca == f"{vs[0].mean():.3f} (2/4)"
    local = rows[0][column["local/null (CI>null)"]]
    # fake: excess = 0.1 and its interval 0.1 ± 0.05 excludes 0 at every layer
    assert local.endswith("(4/4)")
    res[N.LOCAL_TANGENT_EXCESS_CI] = res[N.LOCAL_TANGENT_EXCESS_CI] - 0.1  # now [-0.05, 0.05]: none above
    assert text_headline_rows(res, {})[0][column["local/null (CI>null)"]].endswith("(0/4)")
    assert rows[2][column["E_T/E_N"]].endswith("*")
    assert not rows[0][column["E_T/E_N"]].endswith("*")
