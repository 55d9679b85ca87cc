"""`tgo demo --quick` end to end, the SPEC schemas of what it writes, and the report page."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tgo_analysis.report import SECTIONS, SIMILARITY_SECTIONS, write_report

ROOT = Path(__file__).resolve().parents[2]
# The image demo's figures: every image section, and the pooled ones (pooled metrics hold for image
# stores too: all tokens as points), and the similarity and update figures (SPEC 6); the frequency
# figure needs a text store.
IMAGE_DEMO_FIGURES = [*(section.key for section in SECTIONS), "pooled_anisotropy", "pooled_training",
                      "pooled_eigenspectra", *(section.key for section in SIMILARITY_SECTIONS)]
STORE_COORDS = {"checkpoint_path", "checkpoint_sha256", "layer_name", "label", "token_kind", "token_row", "token_col"}
RESULT_DIMS = {
    "eigenvalues": ("checkpoint", "layer", "token", "rank"),
    "alpha": ("checkpoint", "layer", "token"), "alpha_r2": ("checkpoint", "layer", "token"),
    "effective_rank": ("checkpoint", "layer", "token"), "stable_rank": ("checkpoint", "layer", "token"),
    "participation_ratio": ("checkpoint", "layer", "token"), "spectral_entropy": ("checkpoint", "layer", "token"),
    "spectral_flatness": ("checkpoint", "layer", "token"), "top1_share": ("checkpoint", "layer", "token"),
    "cosine_anisotropy": ("checkpoint", "layer", "token"),
    "eigenvalues_all": ("checkpoint", "layer", "rank"), "alpha_all": ("checkpoint", "layer"),
    "top1_share_all": ("checkpoint", "layer"), "stable_rank_all": ("checkpoint", "layer"),
    "token_correlation": ("checkpoint", "layer", "token", "token_other"),
    "mean_token_correlation": ("checkpoint", "layer"), "intrinsic_dimension": ("checkpoint", "layer"),
    "alpha_cluster": ("token",),
}


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "run"
    done = subprocess.run([sys.executable, "-m", "tgo_app.cli", "demo", "--quick", "--quiet", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "report:" in done.stdout and "index.html" in done.stdout
    assert "…" not in done.stdout, "the headline table was cut (a log is not 80 columns wide)"
    return out


@pytest.mark.slow
def test_demo_store_follows_spec_section_1(demo_dir) -> None:
    ds = xr.open_zarr(demo_dir / "activations.zarr")
    act = ds.activations
    assert act.dims == ("checkpoint", "layer", "sample", "token", "feature")
    assert act.dtype == np.float16 and act.shape[1:] == (7, 359, 17, 128)  # CLS + 4 x 4 patches (issue 22: was 65)
    assert set(ds.coords) >= STORE_COORDS
    assert ds.checkpoint.values[0] == 0 and np.all(np.diff(ds.checkpoint.values) > 0)
    assert {"tgo_schema", "model", "dataset", "created_by"} <= set(ds.attrs)
    assert [str(k) for k in ds.token_kind.values].count("cls") == 1


def test_demo_results_follow_spec_section_2(demo_dir) -> None:
    res = xr.open_zarr(demo_dir / "metrics.zarr")
    for name, dims in RESULT_DIMS.items():
        assert name in res, name
        assert res[name].dims == dims, name
    assert np.isfinite(res.alpha.isel(layer=slice(1, None)).values).all()
    cls0 = res.effective_rank.isel(layer=0, token=0).values
    assert np.isnan(cls0).all(), "CLS at layer 0 is the same vector for every image: zero variance"


@pytest.mark.slow
def test_demo_resumes_instead_of_redoing(demo_dir) -> None:
    page = demo_dir / "report" / "index.html"
    written = page.stat().st_mtime_ns
    done = subprocess.run([sys.executable, "-m", "tgo_app.cli", "demo", "--quick", "--out", str(demo_dir)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "0 blocks written" in done.stderr or "train" not in done.stderr
    assert "reused" in done.stderr
    assert "report reused" in done.stderr and page.stat().st_mtime_ns == written  # its results are unchanged


def test_report_is_self_contained_with_every_figure(demo_dir) -> None:
    page = demo_dir / "report" / "index.html"
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']https?://""", text)
    images = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,", text)
    assert len(images) == len(IMAGE_DEMO_FIGURES)
    for key in IMAGE_DEMO_FIGURES:
        assert (demo_dir / "report" / f"{key}.png").stat().st_size > 5000
    assert not (demo_dir / "report" / "frequency.png").exists(), "an image store has no token frequencies"
    assert "Provenance" in text and "alpha_fit_range" in text and "sha256" in text


def test_report_skips_absent_metrics_instead_of_faking_them(demo_dir, tmp_path) -> None:
    res = xr.open_zarr(demo_dir / "metrics.zarr")[["alpha"]].load()
    page = write_report(res, tmp_path / "r")
    text = page.read_text()
    assert "Not shown (metrics not in these results)" in text
    assert "Inter-token correlation" in text.split("Not shown")[1]
    done = subprocess.run([sys.executable, "-m", "tgo_app.cli", "report", str(tmp_path / "missing.zarr"),
                           "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("tgo: error:")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(demo_dir, tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("check_report", ROOT / "scripts" / "check_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    loaded, total = module.check(demo_dir / "report" / "index.html", tmp_path / "shot.png")
    assert total == len(IMAGE_DEMO_FIGURES) and loaded == total
    assert (tmp_path / "shot.png").stat().st_size > 10000


def test_figure_checker_passes_on_the_demo_report(demo_dir) -> None:
    """Issue 32's defect classes (legend, counts, empty panels, ticks, step scale, sentences) on every
    figure of the image demo's report, drawn from its results as the demo draws them."""
    import json

    from tgo_analysis.report import checks

    res = xr.open_zarr(demo_dir / "metrics.zarr").load()
    training = json.loads((demo_dir / "checkpoints" / "training.json").read_text())
    problems = checks.check_report(res, {"training": training})
    assert problems == [], checks.summary(problems)
