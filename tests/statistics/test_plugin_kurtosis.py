"""A newcomer adds a per-token kurtosis statistic as a plug-in, editing no file of tgo (issue 28).

The kernel, the statistic and its report section live in ``tests/statistics/kurtosis_plugin.py``,
installed here as a package would be (entry points ``tgo.statistics`` and ``tgo.report_sections``).
The values are checked against scipy.stats.kurtosis in float64; the CLI shows its flag and
``--metrics`` selects it; ``write_report`` and ``tgo report`` draw its section.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from scipy import stats as scipy_stats

from tests.analysis.conftest import write_plain_store
from tests.statistics import kurtosis_plugin as plugin

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "tgo_app.cli"]


def _data() -> np.ndarray:
    rng = np.random.default_rng(3)  # heavy tails on some features, an offset mean: kurtosis far from 0
    data = rng.standard_t(df=5, size=(2, 2, 70, 3, 6)) + 0.5
    return data.astype(np.float32)


def _reference(data: np.ndarray, fisher: bool) -> np.ndarray:
    return scipy_stats.kurtosis(data.astype(np.float64), axis=2, fisher=fisher, bias=True).mean(axis=-1)


def _install(tmp_path: Path) -> dict[str, str]:
    """A dist-info naming the plug-in module under both entry-point groups, on the subprocess's path."""
    info = tmp_path / "tgo_kurtosis-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tgo-kurtosis\nVersion: 0.1\n")
    module = plugin.__name__
    (info / "entry_points.txt").write_text(f"[tgo.statistics]\nkurtosis = {module}:Kurtosis\n\n"
                                           f"[tgo.report_sections]\nkurtosis = {module}\n")
    path = os.pathsep.join(p for p in (str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "200"}


@pytest.fixture
def registered_kurtosis(monkeypatch):
    """The statistic and its section registered in this process, both removed afterwards."""
    from tgo_analysis.report import sections
    from tgo_analysis.statistics import STATISTICS, register_statistic

    sections.registered()  # built-ins first, so the copy below holds them
    monkeypatch.setattr(sections, "_REGISTRY", dict(sections._REGISTRY))
    sections.register(plugin.SECTION)
    register_statistic(plugin.Kurtosis())
    yield
    STATISTICS.unregister(plugin.KURTOSIS)


@pytest.mark.parametrize("fisher", [True, False])
def test_kurtosis_plugin_matches_scipy(tmp_path, registered_kurtosis, fisher) -> None:
    from tgo_analysis import analyze

    data = _data()
    store = write_plain_store(tmp_path / "store.zarr", data, chunk=25)  # three sample blocks fold and combine
    out = str(tmp_path / "res.zarr")
    analyze(xr.open_zarr(store), "kurtosis", out=out, progress=False, kurtosis_fisher=fisher)
    got = xr.open_zarr(out)[plugin.KURTOSIS].values
    np.testing.assert_allclose(got, _reference(data, fisher), rtol=1e-9)
    assert abs(_reference(data, True)).max() > 0.3  # the reference is not trivially 0


def test_write_report_draws_the_plugin_section(tmp_path, registered_kurtosis) -> None:
    from tgo_analysis import analyze
    from tgo_analysis.report import write_report

    store = write_plain_store(tmp_path / "store.zarr", _data(), chunk=25)
    out = str(tmp_path / "res.zarr")
    analyze(xr.open_zarr(store), "kurtosis", out=out, progress=False)
    page = write_report(out, tmp_path / "report")
    assert plugin.SECTION.heading in page.read_text()
    assert (page.parent / "kurtosis.png").stat().st_size > 1000


@pytest.mark.slow
def test_installed_kurtosis_plugin_through_the_cli(tmp_path) -> None:
    env = _install(tmp_path)
    shown = subprocess.run([*CLI, "analyze", "--help"], capture_output=True, text=True, env=env)
    assert "--kurtosis-fisher" in shown.stdout and "Statistic: kurtosis" in shown.stdout, shown.stdout
    data = _data()
    store = write_plain_store(tmp_path / "store.zarr", data, chunk=25)
    out = str(tmp_path / "res.zarr")
    done = subprocess.run([*CLI, "analyze", store, "--out", out, "--metrics", "kurtosis", "--no-kurtosis-fisher",
                           "--quiet"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(xr.open_zarr(out)[plugin.KURTOSIS].values, _reference(data, False), rtol=1e-9)
    drawn = subprocess.run([*CLI, "report", out, "--out", str(tmp_path / "report")], capture_output=True, text=True,
                           env=env)
    assert drawn.returncode == 0, drawn.stderr
    assert plugin.SECTION.heading in (tmp_path / "report" / "index.html").read_text()
