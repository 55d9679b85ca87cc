"""`tgo export --format hf-datasets`: a flat-row Arrow dataset that `datasets.load_from_disk` opens,
row for row the store's valid positions (float32, exact); resumable, never complete by halves;
bad input in one line with nothing written."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import xarray as xr

from tests.loader.test_loader import text_reference
from tests.support import run_cli
from tgo_store.errors import TgoError
from tgo_store.loader import export as export_module
from tgo_store.loader.export import PARTIAL_SUFFIX, export_hf_datasets


def rows(path: Path) -> dict[str, np.ndarray]:
    """Every column of the exported dataset as numpy (one slice: a column object iterates row by row)."""
    return dict(datasets.load_from_disk(str(path)).with_format("numpy")[:])


def test_every_row_is_a_valid_position_of_the_text_store_with_its_stored_values(text_store, tmp_path) -> None:
    out = tmp_path / "text-arrow"
    summary = export_hf_datasets(text_store, 1, out, checkpoint=0, exclude_special=True, exclude_first=True,
                                 shard_size=40)
    got = rows(out)
    ds = xr.open_zarr(text_store)
    samples, tokens = np.nonzero(text_reference(text_store, True, True))  # store order: sample-major
    assert summary.rows == len(samples) and summary.shards == -(-len(samples) // 40) > 2
    np.testing.assert_array_equal(got["sample"], ds.sample.values[samples])
    np.testing.assert_array_equal(got["token"], ds.token.values[tokens])
    stored = ds.activations.values[0, 1][samples, tokens].astype(np.float32)
    assert got["activations"].dtype == np.float32 and got["activations"].shape == stored.shape
    np.testing.assert_array_equal(got["activations"], stored)
    np.testing.assert_array_equal(got["token_id"], ds.token_id.values[samples, tokens])
    assert (got["checkpoint"] == int(ds.checkpoint.values[0])).all() and "label" not in got
    assert not (tmp_path / ("text-arrow" + PARTIAL_SUFFIX)).exists()


def test_several_checkpoints_and_labels_in_store_order(image_store, tmp_path) -> None:
    out = tmp_path / "image-arrow"
    export_hf_datasets(image_store, 2, out, checkpoints=[0, 2], tokens=[0, 3, 4], shard_size="64KB")
    got = rows(out)
    ds = xr.open_zarr(image_store)
    n, tokens = ds.sizes["sample"], np.array([0, 3, 4])
    c, s, t = (a.ravel() for a in np.meshgrid([0, 2], np.arange(n), tokens, indexing="ij"))
    np.testing.assert_array_equal(got["checkpoint"], ds.checkpoint.values[c])
    np.testing.assert_array_equal(got["sample"], ds.sample.values[s])
    np.testing.assert_array_equal(got["token"], ds.token.values[t])
    np.testing.assert_array_equal(got["label"], ds.label.values[s])
    np.testing.assert_array_equal(got["activations"], ds.activations.values[c, 2, s, t].astype(np.float32))
    info = datasets.load_from_disk(str(out)).features
    assert info["activations"].length == ds.sizes["feature"]


def test_an_interrupted_export_resumes_at_the_first_missing_shard(text_store, tmp_path, monkeypatch) -> None:
    fresh = tmp_path / "fresh"
    export_hf_datasets(text_store, 0, fresh, checkpoint=0, shard_size=30)
    out = tmp_path / "cut"
    write = export_module._write_shard
    written: list[int] = []

    def cut_after_two(source, plan, k, path, features, bar):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(k)
        return write(source, plan, k, path, features, bar)

    monkeypatch.setattr(export_module, "_write_shard", cut_after_two)
    with pytest.raises(KeyboardInterrupt):
        export_hf_datasets(text_store, 0, out, checkpoint=0, shard_size=30)
    assert not out.exists()  # nothing named --out until it is complete
    partial = tmp_path / ("cut" + PARTIAL_SUFFIX)
    assert len(list(partial.glob("data-*.arrow"))) == 2 and not (partial / "state.json").exists()
    with pytest.raises(FileNotFoundError):
        datasets.load_from_disk(str(partial))
    monkeypatch.setattr(export_module, "_write_shard", write)
    summary = export_hf_datasets(text_store, 0, out, checkpoint=0, shard_size=30)
    assert summary.reused_shards == 2 and summary.shards > 3 and not partial.exists()
    assert not list(out.glob("*.tmp"))
    a, b = rows(out), rows(fresh)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    before = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    again = export_hf_datasets(text_store, 0, out, checkpoint=0, shard_size=30)
    assert again.already_complete and {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == before


def test_another_selection_never_mixes_with_an_unfinished_or_finished_export(text_store, tmp_path) -> None:
    out = tmp_path / "arrow"
    export_hf_datasets(text_store, 0, out, checkpoint=0)
    with pytest.raises(TgoError, match="already exists"):
        export_hf_datasets(text_store, 1, out, checkpoint=0)
    partial = tmp_path / ("other" + PARTIAL_SUFFIX)
    partial.mkdir()
    (partial / "tgo_export.json").write_text('{"fingerprint": "something else"}')
    with pytest.raises(TgoError, match="unfinished export of another selection"):
        export_hf_datasets(text_store, 0, tmp_path / "other", checkpoint=0)


def test_bad_input_is_one_line_and_writes_nothing(text_store, image_store, tmp_path, capsys) -> None:
    out = str(tmp_path / "out")
    cases = {
        ("--layer", "9"): "layer 9 is not in",
        ("--layer", "0", "--checkpoints", "5"): "step 5 is not a checkpoint of the store; the nearest is step",
        ("--layer", "0", "--tokens", "40"): "token index 40",
        ("--layer", "0", "--format", "parquet"): "unknown export format 'parquet'",
        ("--layer", "0", "--checkpoints", "x"): "cannot read --checkpoints 'x'; give training steps",
        ("--layer", "0", "--shard-size", "lots"): "shard size 'lots'",
    }
    for args, message in cases.items():
        done = run_cli(["export", text_store, *args, "--out", out], capsys)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and message in lines[0], (args, done.stderr)
        assert "Traceback" not in done.stderr
    done = run_cli(["export", image_store, "--layer", "0", "--exclude-special", "--out", out], capsys)
    assert done.returncode == 2 and "token_special" in done.stderr
    done = run_cli(["export", text_store, "--layer", "0", "--out", "s3://bucket/arrow"], capsys)
    assert done.returncode == 2 and "not a local folder" in done.stderr
    assert not list(tmp_path.iterdir())


def test_an_incomplete_checkpoint_is_refused(image_store, tmp_path, capsys) -> None:
    import shutil

    path = tmp_path / "half.zarr"
    shutil.copytree(image_store, path)
    next((path / "_tgo" / "blocks").glob("c000001/*.json")).unlink()  # as if checkpoint 1's ingest was cut
    done = run_cli(["export", str(path), "--layer", "0", "--checkpoints", "all", "--out", str(tmp_path / "o")],
                   capsys)
    assert done.returncode == 2 and "checkpoint 1" in done.stderr and "tgo ingest" in done.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / ("o" + PARTIAL_SUFFIX)).exists()
    done = run_cli(["export", str(path), "--layer", "0", "--checkpoints", "0,-1", "--out", str(tmp_path / "o")],
                   capsys)
    assert done.returncode == 0 and "exported" in done.stdout
    assert set(np.unique(rows(tmp_path / "o")["checkpoint"]).tolist()) == {0, 200}  # steps: 0 and the last
