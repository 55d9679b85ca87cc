"""A `tgo_schema` attribute edited into something that is no version (issue 30): every verb that
opens the store refuses it in one line, never as a bug."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.support import TINY_VIT, TINY_VIT_SPEC, run_cli, save_checkpoints
from tgo_store import ingest


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("schema")
    ckpts = save_checkpoints(root / "ckpt", [0])
    store = root / "store.zarr"
    ingest(str(store), model_spec=TINY_VIT_SPEC, model_kwargs=dict(TINY_VIT), checkpoints=ckpts,
           data_spec="synthetic:8", batch_size=4, samples_per_block=4, device="cpu", progress=False)
    return store


@pytest.mark.parametrize("value", ["abc", [1], 99])
@pytest.mark.parametrize("verb", ["info", "verify", "analyze"])
def test_a_schema_that_is_no_version_is_one_line(store, tmp_path, capsys, value, verb) -> None:
    edited = tmp_path / "store.zarr"
    shutil.copytree(store, edited)
    meta = json.loads((edited / "zarr.json").read_text())  # the group's own attributes
    meta["attributes"]["tgo_schema"] = value
    (edited / "zarr.json").write_text(json.dumps(meta))
    args = [verb, str(edited)] + (["--out", str(tmp_path / "m.zarr"), "--quiet"] if verb == "analyze" else [])
    done = run_cli(args, capsys)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "tgo schema" in lines[0] and "bug in tgo" not in lines[0], lines[0]
