"""A new statistic with its own CLI option is one module plus one registry entry (issue 17).

The module below is written into a fake installed package that declares it under the
entry-point group ``tgo.statistics``; nothing in tgo is edited. ``tgo analyze --help`` then
shows its option, ``--metrics`` selects it, and the value reaches the statistic.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import xarray as xr

from tests.analysis.conftest import write_plain_store

MODULE = '''
from dataclasses import dataclass

import numpy as np

from tgo_analysis.statistics.base import Option, Result, StatisticBase, Variable

QUANTILE = Option("norm_quantile", 1.0, "norm_quantile: which quantile of the token norms", float)


@dataclass(frozen=True)
class NormQuantile(StatisticBase):
    """Per token, a quantile of the sample norms (kept exactly: test data are small)."""

    name: str = "norm_quantile"
    metrics: tuple = ("norm_quantile",)
    token_split: bool = True
    options = (QUANTILE,)

    def variables(self, ctx):
        return (Variable("norm_quantile", ("token",), (ctx.n_tokens,)),)

    def chunk(self, block, ctx):
        return [np.linalg.norm(np.asarray(block.x, dtype=np.float64), axis=-1)]

    def combine(self, a, b):
        return a + b

    def aggregate(self, partial, ctx):
        q = ctx.option(QUANTILE)
        return Result({"norm_quantile": np.quantile(np.concatenate(partial), q, axis=0)})

    def partial_bytes(self, ctx, n_tokens):
        return ctx.n_samples * n_tokens * 8
'''


def _install(tmp_path) -> dict[str, str]:
    (tmp_path / "tgo_norm_quantile.py").write_text(textwrap.dedent(MODULE))
    info = tmp_path / "tgo_norm_quantile-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tgo-norm-quantile\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tgo.statistics]\nnorm_quantile = tgo_norm_quantile:NormQuantile\n")
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def test_a_plugin_statistic_brings_its_own_flag(tmp_path) -> None:
    env = _install(tmp_path)
    cli = [sys.executable, "-m", "tgo_app.cli", "analyze"]
    shown = subprocess.run([*cli, "--help"], capture_output=True, text=True, env={**env, "COLUMNS": "200"})
    assert "--norm-quantile" in shown.stdout
    listed = subprocess.run([*cli, "--list-metrics"], capture_output=True, text=True, env=env)
    assert "norm_quantile" in listed.stdout
    rng = np.random.default_rng(0)
    data = rng.normal(size=(1, 2, 60, 3, 8)).astype(np.float32)
    store = write_plain_store(tmp_path / "store.zarr", data, chunk=25)
    out = str(tmp_path / "res.zarr")
    done = subprocess.run([*cli, store, "--out", out, "--metrics", "norm_quantile", "--norm-quantile", "0.25",
                           "--quiet"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    got = xr.open_zarr(out)["norm_quantile"].values
    want = np.quantile(np.linalg.norm(data.astype(np.float64), axis=-1), 0.25, axis=2)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    from tgo_analysis.results.store import open_results

    assert open_results(out).attrs["tgo_config"]["options"]["norm_quantile"] == 0.25  # JSON text on disk
