"""The report from a fake, schema-exact results dataset: every figure, nothing faked, one file."""

from __future__ import annotations

import base64
import re
import subprocess
import sys

import numpy as np
import pytest

from tgo_analysis.report import SECTIONS, write_report
from tgo_analysis.report import figures as F
from tgo_app.demos.image import headline_rows

INLINE_PNG = re.compile(r"<img alt='([^']+)' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>")


def _inline_images(html: str) -> dict[str, bytes]:
    return {alt: base64.b64decode(data) for alt, data in INLINE_PNG.findall(html)}


def test_every_figure_is_inline_and_beside_the_page(tmp_path, fake_results, fake_training) -> None:
    page = write_report(fake_results, tmp_path / "r", title="fake", training=fake_training)
    assert page == tmp_path / "r" / "index.html"
    text = page.read_text()
    images = _inline_images(text)
    assert list(images) == [s.heading for s in SECTIONS]
    for section in SECTIONS:
        png = images[section.heading]
        assert png.startswith(b"\x89PNG") and len(png) > 5000
        assert (tmp_path / "r" / f"{section.key}.png").read_bytes() == png
    # self-contained: nothing fetched from anywhere, not even a relative file
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", text)
    assert re.findall(r"""src=["']([^"']+)""", text) and all(
        s.startswith("data:image/png;base64,") for s in re.findall(r"""src=["']([^"']+)""", text)
    )
    assert "<script" not in text and "<link" not in text and "Not shown" not in text


@pytest.mark.parametrize(
    ("dropped", "skipped"),
    [
        (["token_correlation", "mean_token_correlation"], {"correlation", "correlation_matrices"}),
        (["intrinsic_dimension"], {"intrinsic_dimension"}),
        (["eigenvalues"], {"eigenspectra"}),
        (["alpha_cluster"], {"clusters"}),
        (
            ["effective_rank", "participation_ratio", "spectral_entropy", "spectral_flatness",
             "top1_share", "cosine_anisotropy"],
            {"training_dynamics_cls", "training_dynamics_patch", "anisotropy"},
        ),
    ],
)
def test_absent_metrics_are_skipped_with_a_note(tmp_path, fake_results, fake_training, dropped, skipped):
    out = tmp_path / "r"
    out.mkdir()
    (out / "intrinsic_dimension.png").write_bytes(b"stale from an earlier run")
    text = write_report(fake_results.drop_vars(dropped), out, training=fake_training).read_text()
    drawn = set(_inline_images(text))
    by_key = {s.key: s for s in SECTIONS}
    assert drawn == {s.heading for s in SECTIONS if s.key not in skipped}
    note = re.search(r"Not shown \(metrics not in these results\): ([^<]+)\.", text)
    assert note is not None
    assert set(note.group(1).split(", ")) == {by_key[k].heading for k in skipped}
    for key in skipped:
        assert not (out / f"{key}.png").exists()


def test_the_training_figure_needs_a_training_log(tmp_path, fake_results) -> None:
    text = write_report(fake_results, tmp_path / "r").read_text()
    assert "Training" not in _inline_images(text)
    assert "Not shown (metrics not in these results): Training." in text


def test_alpha_lines_are_the_stored_values(fake_results) -> None:
    """The plotted y data is the results' alpha: CLS itself, patches averaged (NaN-aware)."""
    fig = F.alpha_trajectories(fake_results)
    cls_ax, patch_ax, all_ax, cluster_ax = fig.axes[:4]
    alpha = fake_results.alpha.values
    patches = fake_results.token_kind.values == "patch"
    for ci in range(fake_results.sizes["checkpoint"]):
        np.testing.assert_array_equal(cls_ax.lines[ci].get_ydata(), alpha[ci, :, 0])
        np.testing.assert_allclose(patch_ax.lines[ci].get_ydata(), alpha[ci][:, patches].mean(-1))
        np.testing.assert_array_equal(all_ax.lines[ci].get_ydata(), fake_results.alpha_all.values[ci])
    labels = fake_results.alpha_cluster.values
    first = min(c for c in labels if c >= 0)
    np.testing.assert_allclose(
        cluster_ax.lines[0].get_ydata(), np.nanmean(alpha[-1][:, labels == first], axis=-1)
    )


def test_metrics_over_training_has_one_line_per_layer(fake_results) -> None:
    fig = F.metrics_over_training(fake_results, F.CLS_VIEW)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == list(F.SPECTRAL)
    er = axes[0]
    # CLS at layer 0 has no value (one vector for every image): no line, a note naming it instead
    assert [ln.get_label() for ln in er.lines] == [f"layer {i}" for i in range(1, fake_results.sizes["layer"])]
    assert "layer 0: no value" in " ".join(t.get_text().replace("\n", " ") for t in er.texts)
    np.testing.assert_array_equal(er.lines[1].get_xdata(), fake_results.checkpoint.values)
    np.testing.assert_array_equal(er.lines[1].get_ydata(), fake_results.effective_rank.values[:, 2, 0])
    assert er.get_xlabel() and er.get_ylabel()


def test_alpha_fit_line_matches_weighted_polyfit() -> None:
    """Independent reference: numpy.polyfit of log λ on log i with weights sqrt(1/i) (polyfit
    weights multiply residuals, so squared weights are 1/i as in the alpha fit)."""
    rng = np.random.default_rng(1)
    ranks = np.arange(1, 301)
    eigs = 3.0 * ranks**-1.3 * np.exp(rng.normal(0, 0.05, ranks.size))
    fit = np.arange(11, 101)
    slope, intercept = np.polyfit(np.log(fit), np.log(eigs[fit - 1]), 1, w=np.sqrt(1.0 / fit))
    line_ranks, line = F.alpha_fit_line(eigs, -slope, (11, 100))
    np.testing.assert_array_equal(line_ranks, fit)
    np.testing.assert_allclose(line, np.exp(intercept) * fit**slope, rtol=1e-10)


def test_alpha_fit_line_is_clipped_like_the_fit_and_empty_without_alpha() -> None:
    eigs = np.r_[np.arange(60, 0, -1.0), np.zeros(40)]  # 60 nonzero -> ranks 11..50
    ranks, line = F.alpha_fit_line(eigs, 1.0, (11, 100))
    assert ranks[0] == 11 and ranks[-1] == 50 and np.isfinite(line).all()
    assert F.alpha_fit_line(eigs, float("nan"), (11, 100))[1].size == 0
    assert F.alpha_fit_line(np.zeros(100), 1.0, (11, 100))[1].size == 0


def test_eigenspectrum_line_passes_through_an_exact_power_law(fake_results) -> None:
    fig = F.eigenspectra(fake_results, token=3, step=10, layers=[2])
    ax = fig.axes[0]
    points, line = ax.lines[0], ax.lines[1]
    eigs = fake_results.eigenvalues.sel(checkpoint=10, layer=2, token=3).values
    np.testing.assert_array_equal(points.get_ydata(), eigs)
    np.testing.assert_allclose(line.get_ydata(), eigs[10:100], rtol=1e-10)
    assert f"{float(fake_results.alpha.sel(checkpoint=10, layer=2, token=3)):.2f}" in line.get_label()


@pytest.mark.slow
def test_the_spectrum_choice_reaches_the_eigenspectrum_figure(tmp_path, fake_results) -> None:
    write_report(fake_results, tmp_path / "a")
    write_report(fake_results, tmp_path / "b", spectrum_step=10, spectrum_token=4)
    read = lambda d, k: (tmp_path / d / f"{k}.png").read_bytes()  # noqa: E731
    assert read("a", "alpha") == read("b", "alpha")
    assert read("a", "eigenspectra") != read("b", "eigenspectra")


def test_provenance_tables(tmp_path, fake_results, fake_training) -> None:
    text = write_report(fake_results, tmp_path / "r", training=fake_training).read_text()
    provenance = text.split("id='provenance'")[1]
    for step, path, sha in zip(
        fake_results.checkpoint.values,
        fake_results.checkpoint_path.values,
        fake_results.checkpoint_sha256.values,
        strict=True,
    ):
        assert f"<td>{step}</td><td>{path}</td><td>{sha[:12]}</td>" in provenance
    assert "<td>100</td><td>/runs/exp/step_000100.pth</td><td>" in provenance
    assert "<td>0.900</td>" in provenance  # accuracy of step 100
    for needle in ("fake_vit", "synthetic:64", "alpha_fit_range", "weights 1/i", "numpy", np.__version__):
        assert needle in provenance, needle


def test_headline_rows_follow_the_results(fake_results) -> None:
    rows = headline_rows(fake_results, {0: 0.1, 100: 0.9})
    corr = fake_results.mean_token_correlation.values
    for ci, row in enumerate(rows):
        assert row[0] == str(fake_results.checkpoint.values[ci])
        assert row[2] == f"{fake_results.alpha.values[ci, 1, 0]:.3f}"
        assert row[3] == f"{fake_results.alpha.values[ci, -1, 0]:.3f}"
        assert row[5] == str(int(np.argmin(corr[ci])))
    assert [r[1] for r in rows] == ["0.100", "n/a", "0.900"]
    assert all(r[2] == "n/a" for r in headline_rows(fake_results.drop_vars("alpha"), {}))


def test_report_verb_writes_the_page_and_refuses_a_bad_choice(tmp_path, fake_results_store) -> None:
    cli = [sys.executable, "-m", "tgo_app.cli", "report", fake_results_store]
    done = subprocess.run([*cli, "--out", str(tmp_path / "r"), "--spectrum-step", "10"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "r" / "index.html") in done.stdout
    bad = subprocess.run([*cli, "--out", str(tmp_path / "x"), "--spectrum-token", "999"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.startswith("tgo: error: token 999 is not in the results")
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
