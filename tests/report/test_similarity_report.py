"""The similarity section of the report (SPEC 6) on real results of a small planted store."""

from __future__ import annotations

import numpy as np
import xarray as xr

import tgo_analysis
from tgo_analysis.report import SIMILARITY_SECTIONS, write_report


def results() -> xr.Dataset:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 3, 80, 2, 6)).astype(np.float32)
    x[1:] = 0.3 * x[1:] + x[:-1]  # checkpoints drift
    ds = xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), x)},
                    coords={"checkpoint": [0, 50, 100],
                            "token_kind": ("token", np.array(["cls", "patch"]))}).chunk({"sample": 40})
    return tgo_analysis.analyze(ds, "similarity,update_norm,update_pca_energy", progress=False,
                                representations="mean,cls")


def test_the_similarity_section_draws_heatmaps_convergence_and_updates(tmp_path) -> None:
    page = write_report(results(), tmp_path / "report").read_text()
    for section in SIMILARITY_SECTIONS:
        assert (tmp_path / "report" / f"{section.key}.png").stat().st_size > 1000, section.key
        assert section.heading in page
    assert "bottom-up" in page and "does not say which directions changed" in page


def test_results_without_similarity_variables_leave_the_section_out(tmp_path) -> None:
    res = results().drop_vars(["cka_layers", "cka_checkpoints", "update_norm", "update_pca_energy"])
    write_report(res, tmp_path / "report")
    assert not (tmp_path / "report" / "cka_layers.png").exists()
