"""A store or results store whose `tgo_schema` this tgo does not read (newer, or not a number)
is refused in one line by every verb that opens it, never reported as a bug."""

from __future__ import annotations

import shutil

import pytest
import zarr

from tests.support import ingest_kwargs, run_cli, save_checkpoints
from tgo_analysis.analyze import analyze
from tgo_store import ingest
from tgo_store.store.open import open_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("schema")
    store, results = str(root / "s.zarr"), str(root / "r.zarr")
    ingest(store, **ingest_kwargs(save_checkpoints(root / "ckpt", [0])))
    analyze(open_store(store), "mean_norm", out=results, progress=False)
    return store, results


def with_schema(source: str, target: str, value) -> str:
    shutil.copytree(source, target)
    group = zarr.open_group(target, mode="r+", use_consolidated=False)
    group.attrs["tgo_schema"] = value
    zarr.consolidate_metadata(target)
    return target


def one_line(done) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "bug" not in lines[0]
    return lines[0]


@pytest.mark.parametrize("value", [99, "abc"])
def test_results_of_an_unknown_schema_are_refused_in_one_line(stores, tmp_path, capsys, value) -> None:
    results = with_schema(stores[1], str(tmp_path / "r.zarr"), value)
    for argv in (["info", results], ["report", results, "--out", str(tmp_path / "page")]):
        line = one_line(run_cli(argv, capsys))
        assert f"results of tgo schema {value!r}" in line and "this tgo reads results schemas 1" in line
    assert not (tmp_path / "page").exists()


@pytest.mark.parametrize("value", [99, "abc"])
def test_a_store_of_an_unknown_schema_is_refused_in_one_line(stores, tmp_path, capsys, value) -> None:
    store = with_schema(stores[0], str(tmp_path / "s.zarr"), value)
    for argv in (["info", store], ["analyze", store, "--out", str(tmp_path / "r.zarr"), "--metrics", "mean_norm"]):
        assert f"written with tgo schema {value!r}" in one_line(run_cli(argv, capsys))
