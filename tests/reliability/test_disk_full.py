"""A full disk during `tgo analyze`, `tgo export` and `tgo report` is one named line, and the same
command resumes once space is freed, ending equal to a clean run.

The disk is a real one: a 2 MB tmpfs filled with a ballast file to leave a little room, so
the write fails part-way (needs root to mount; skipped elsewhere). The mapping itself (an
ENOSPC OSError anywhere under a writer -> ``no space left on <out>``) is also checked with a
planted OSError, which runs everywhere.
"""

from __future__ import annotations

import errno
import importlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.support import ingested_store, run_cli
from tgo_analysis.analyze import analyze
from tgo_analysis.report import write_report
from tgo_store.loader import export as export_module
from tgo_store.store.open import open_store

analyze_module = importlib.import_module("tgo_analysis.analyze")  # the package's `analyze` is the function
report_module = importlib.import_module("tgo_analysis.report")
METRICS = "alpha,mean_norm"
ANALYZE = ["--metrics", METRICS, "--fit-range", "2:6", "--quiet"]
EXPORT = ["--layer", "1", "--checkpoints", "all", "--shard-size", "2000", "--quiet"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return ingested_store(tmp_path_factory.mktemp("full"))


@pytest.fixture(scope="module")
def clean(store, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("clean") / "r.zarr")
    analyze(open_store(store), METRICS, out=out, fit_range=(2, 6), progress=False)
    return out


class SmallDisk:
    """A 2 MB tmpfs; ``fill(free)`` leaves ``free`` bytes, ``free_all()`` removes the ballast."""

    def __init__(self, root: Path):
        self.root, self.ballast = root, root / "ballast"

    def fill(self, free: int) -> None:
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT)
        size = 0
        try:
            while True:
                size += os.write(fd, b"\1" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        os.ftruncate(fd, max(0, size - free))
        os.close(fd)

    def free_all(self) -> None:
        self.ballast.unlink()


@pytest.fixture
def small_disk(tmp_path) -> SmallDisk:
    root = tmp_path / "disk"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(root)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the planted-ENOSPC tests cover "
                    "the message")
    try:
        yield SmallDisk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def named_full_disk(done, out: Path | str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"tgo: error: no space left on {out};") and "re-run the same command" in lines[0]
    assert "bug" not in lines[0]


def same_results(path: str, reference: str) -> None:
    got, want = xr.open_zarr(path).load(), xr.open_zarr(reference).load()
    for name in want.data_vars:
        np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)


def same_files(folder: Path, reference: Path) -> None:
    names = sorted(p.name for p in reference.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == names
    for name in names:
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), name


def test_analyze_on_a_full_disk(store, clean, small_disk, capsys) -> None:
    out = small_disk.root / "r.zarr"
    small_disk.fill(160_000)
    named_full_disk(run_cli(["analyze", store, "--out", str(out), *ANALYZE], capsys), out)
    small_disk.free_all()
    assert run_cli(["analyze", store, "--out", str(out), *ANALYZE], capsys).returncode == 0
    same_results(str(out), clean)


def test_export_on_a_full_disk(store, small_disk, tmp_path, capsys) -> None:
    out = small_disk.root / "export"
    small_disk.fill(400_000)
    named_full_disk(run_cli(["export", store, "--out", str(out), *EXPORT], capsys), out)
    assert not out.exists()
    small_disk.free_all()
    assert run_cli(["export", store, "--out", str(out), *EXPORT], capsys).returncode == 0
    assert run_cli(["export", store, "--out", str(tmp_path / "clean"), *EXPORT], capsys).returncode == 0
    same_files(out, tmp_path / "clean")


def test_report_on_a_full_disk(clean, small_disk, tmp_path, capsys) -> None:
    page = small_disk.root / "page"
    write_report(clean, page, title="before")
    before = {p.name: p.read_bytes() for p in page.iterdir()}
    small_disk.fill(40_000)
    named_full_disk(run_cli(["report", clean, "--out", str(page)], capsys), page)
    assert {p.name: p.read_bytes() for p in page.iterdir()} == before  # the previous page, whole
    small_disk.free_all()
    assert run_cli(["report", clean, "--out", str(page)], capsys).returncode == 0
    assert run_cli(["report", clean, "--out", str(tmp_path / "clean")], capsys).returncode == 0
    same_files(page, tmp_path / "clean")


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["analyze", "analyze-create", "export", "report"])
def test_a_planted_enospc_names_the_output(where, store, clean, tmp_path, monkeypatch, capsys) -> None:
    """Without a small disk: the same line from an ENOSPC raised where each verb writes (creating
    a results store wraps it in its own error first: still named as a full disk)."""
    out = tmp_path / "out"
    verb = where.split("-")[0]
    argv = {"analyze": ["analyze", store, "--out", str(out), *ANALYZE],
            "export": ["export", store, "--out", str(out), *EXPORT],
            "report": ["report", clean, "--out", str(out)]}[verb]
    module, name = {"analyze": (analyze_module, "write_unit"), "analyze-create": (xr.Dataset, "to_zarr"),
                    "export": (export_module, "_write_shard"), "report": (report_module, "_png")}[where]
    monkeypatch.setattr(module, name, no_space)
    named_full_disk(run_cli(argv, capsys), out)
