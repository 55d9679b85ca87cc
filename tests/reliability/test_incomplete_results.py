"""Completeness is part of a results store: `tgo info` and `tgo report` say which units are missing.

An analysis killed after 2 of its 6 (checkpoint, layer) units leaves results that `tgo report`
refuses in one line naming the missing units, or draws under a banner with --allow-incomplete;
the resumed analysis equals a clean one number for number and its report has no banner. A
report killed while it redraws an existing folder leaves the previous page whole, and the
re-run's page equals a clean report of the same results byte for byte.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.support import ingested_store, run_cli
from tgo_analysis.analyze import analyze
from tgo_analysis.report import write_report
from tgo_analysis.report.build import OLD_SUFFIX, PARTIAL_SUFFIX
from tgo_store.errors import TgoError
from tgo_store.store.open import open_store

analyze_module = importlib.import_module("tgo_analysis.analyze")  # the package's `analyze` is the function
METRICS = "alpha,mean_norm"
FIT = (2, 6)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return ingested_store(tmp_path_factory.mktemp("incomplete"))


@pytest.fixture(scope="module")
def clean(store, tmp_path_factory) -> str:
    """A clean, uninterrupted analysis of the store."""
    out = str(tmp_path_factory.mktemp("clean") / "r.zarr")
    analyze(open_store(store), METRICS, out=out, fit_range=FIT, progress=False)
    return out


def killed_after(monkeypatch, n_units: int) -> None:
    """The analysis dies (as a kill would) when it is about to write its unit number n_units + 1."""
    real, written = analyze_module.write_unit, []

    def write_unit(*args, **kwargs):
        if len(written) == n_units:
            raise KeyboardInterrupt
        written.append(args[1:3])
        return real(*args, **kwargs)

    monkeypatch.setattr(analyze_module, "write_unit", write_unit)


def test_incomplete_results_are_refused_or_drawn_under_a_banner(store, clean, tmp_path, monkeypatch, capsys) -> None:
    out, page = str(tmp_path / "r.zarr"), tmp_path / "page"
    killed_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        analyze(open_store(store), METRICS, out=out, fit_range=FIT, progress=False)
    monkeypatch.undo()

    info = run_cli(["info", out], capsys)
    assert info.returncode == 0 and "incomplete: 4 of 6 (checkpoint, layer) units are not written" in info.stdout
    refused = run_cli(["report", out, "--out", str(page)], capsys)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert "is incomplete: 4 of 6" in lines[0] and "(step 0, layer 2)" in lines[0] and "(step 10, layer 0)" in lines[0]
    assert "--allow-incomplete" in lines[0] and not page.exists()

    drawn = run_cli(["report", out, "--out", str(page), "--allow-incomplete"], capsys)
    assert drawn.returncode == 0, drawn.stderr
    text = (page / "index.html").read_text()
    assert "Incomplete results." in text and "(step 10, layer 2)" in text

    analyze(open_store(store), METRICS, out=out, fit_range=FIT, progress=False)  # the resume finishes it
    finished, reference = xr.open_zarr(out).load(), xr.open_zarr(clean).load()
    for name in reference.data_vars:
        np.testing.assert_array_equal(finished[name].values, reference[name].values, err_msg=name)
    assert run_cli(["info", out], capsys).stdout.strip().endswith("complete")
    assert run_cli(["report", out, "--out", str(page)], capsys).returncode == 0
    assert "Incomplete results." not in (page / "index.html").read_text()


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_report_killed_while_redrawing_leaves_the_previous_page_whole(clean, tmp_path, monkeypatch) -> None:
    page = tmp_path / "page"
    write_report(clean, page, title="before")
    before = folder_bytes(page)
    drawn = []

    def kill_on_the_second_figure(section):
        def draw(res, options):
            drawn.append(section.key)
            if len(drawn) == 2:
                raise KeyboardInterrupt
            return section.draw(res, options)
        return draw

    import dataclasses

    import tgo_analysis.report as report_module

    real_groups = report_module._section_groups

    def killing_groups(res):
        shown, hidden = real_groups(res)
        return [dataclasses.replace(s, draw=kill_on_the_second_figure(s)) for s in shown], hidden

    monkeypatch.setattr(report_module, "_section_groups", killing_groups)
    with pytest.raises(KeyboardInterrupt):
        write_report(clean, page, title="after")
    monkeypatch.undo()
    assert folder_bytes(page) == before  # the old page with its own figures, nothing new beside it

    write_report(clean, page, title="after")
    write_report(clean, tmp_path / "reference", title="after")
    assert folder_bytes(page) == folder_bytes(tmp_path / "reference")
    assert sorted(os.listdir(tmp_path)) == ["page", "reference"]  # no partial or old folder left


def test_a_swap_cut_between_its_renames_is_undone_by_the_next_report(clean, tmp_path) -> None:
    page = tmp_path / "page"
    write_report(clean, page)
    before = folder_bytes(page)
    page.rename(tmp_path / f"page{OLD_SUFFIX}")  # killed after the first rename of the swap
    (tmp_path / f"page{PARTIAL_SUFFIX}").mkdir()
    (tmp_path / f"page{PARTIAL_SUFFIX}" / "alpha.png").write_bytes(b"half drawn")
    write_report(clean, page)
    assert folder_bytes(page) == before
    assert sorted(os.listdir(tmp_path)) == ["page"]


def test_a_folder_with_other_files_is_not_replaced(clean, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(TgoError, match=r"holds files a report does not write \(notes.txt\)"):
        write_report(clean, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
