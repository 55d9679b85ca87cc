"""A resumed demo keeps its report only when the page was written from exactly these results."""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from tgo_analysis.report import stamp


def _results_with(path, value: float) -> str:
    xr.Dataset({"alpha": (("checkpoint", "layer"), np.full((2, 3), value))}).to_zarr(str(path), mode="w",
                                                                                     zarr_format=3)
    return str(path)


def _results(path) -> str:
    return _results_with(path, 1.0)


def test_the_report_is_current_only_for_the_inputs_it_was_written_from(tmp_path) -> None:
    results, report = _results(tmp_path / "metrics.zarr"), tmp_path / "report"
    report.mkdir()
    options = {"title": "t", "training": {"steps": [0, 10]}}
    digest = stamp.inputs_digest([results], options)
    assert not stamp.is_current(report, digest)  # nothing written yet
    stamp.mark(report, digest)
    assert not stamp.is_current(report, digest)  # a stamp without its page (an interrupted write)
    (report / "index.html").write_text("<html></html>")
    assert stamp.is_current(report, stamp.inputs_digest([results], options))
    # other options, or other results (a unit recomputed): the page is written again
    assert not stamp.is_current(report, stamp.inputs_digest([results], {**options, "title": "u"}))
    chunk = next(p for p in (tmp_path / "metrics.zarr").rglob("*") if p.is_file() and p.name != "zarr.json")
    os.utime(chunk, ns=(chunk.stat().st_atime_ns, chunk.stat().st_mtime_ns + 10**9))
    assert stamp.is_current(report, stamp.inputs_digest([results], options))  # rewritten with the same bytes
    run = xr.open_zarr(results).attrs  # a resumed run that computed nothing: new run attrs, same numbers
    xr.Dataset(attrs={**run, "created_at": "2030-01-01T00:00:00Z", "analysis_summary": {"units_computed": 0}}) \
        .to_zarr(results, mode="a", zarr_format=3)
    assert stamp.is_current(report, stamp.inputs_digest([results], options))
    xr.Dataset(attrs={"alpha_fit_range": [3, 9]}).to_zarr(results, mode="a", zarr_format=3)  # a definition changed
    assert not stamp.is_current(report, stamp.inputs_digest([results], options))
    stamp.mark(report, stamp.inputs_digest([results], options))
    _results_with(tmp_path / "metrics.zarr", 2.0)
    assert not stamp.is_current(report, stamp.inputs_digest([results], options))
    # a store that is not a local folder cannot be listed cheaply: never reused
    assert stamp.inputs_digest(["memory://results.zarr"], options) is None
    assert not stamp.is_current(report, None)
