"""Checkpoints are recognised by their weights (sha256) and step wherever their files now live
(issue 30): a resumed ingest from a moved folder finishes the store with no duplicate step,
records the new paths, and ends byte-identical to a clean ingest from the new folder. Paths are
stored absolute, whatever the command line said."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from tests.support import TINY_VIT, TINY_VIT_SPEC, save_checkpoints, store_bytes
from tgo_store import ingest, open_store
from tgo_store.store.record_keys import commit_key

KWARGS = {"model_spec": TINY_VIT_SPEC, "model_kwargs": dict(TINY_VIT), "data_spec": "synthetic:8",
          "batch_size": 4, "samples_per_block": 4, "device": "cpu", "progress": False}


@pytest.mark.parametrize("allow_duplicate_weights", [False, True])
def test_moved_checkpoints_resume_without_duplicate_steps(tmp_path, monkeypatch, allow_duplicate_weights) -> None:
    first, moved = tmp_path / "run", tmp_path / "archive" / "run"
    save_checkpoints(first, [0, 5])
    store = tmp_path / "store.zarr"
    monkeypatch.chdir(tmp_path)
    ingest("store.zarr", checkpoints=["run/step_0.pth", "run/step_5.pth"], **KWARGS)  # relative on the command line
    ds = open_store(str(store))
    assert list(ds.checkpoint_path.values) == [str(first / "step_0.pth"), str(first / "step_5.pth")]
    os.remove(store / commit_key(1, 1))  # the ingest was cut short before its last block was committed
    shutil.move(str(first), str(moved))
    summary = ingest(str(store), checkpoints=str(moved / "*.pth"), allow_duplicate_weights=allow_duplicate_weights,
                     **KWARGS)
    assert (summary.blocks_written, summary.blocks_skipped) == (1, 3)
    ds = open_store(str(store))
    assert list(ds.checkpoint.values) == [0, 5]
    assert list(ds.checkpoint_path.values) == [str(moved / "step_0.pth"), str(moved / "step_5.pth")]
    clean = tmp_path / "clean.zarr"
    ingest(str(clean), checkpoints=str(moved / "*.pth"), **KWARGS)
    assert store_bytes(store) == store_bytes(clean)


def test_the_same_weights_under_another_step_are_still_refused(tmp_path) -> None:
    """A copy whose step differs (read from its name) is the known trap of public series, not a move."""
    import torch

    from tgo_store.errors import TgoError

    ckpt = save_checkpoints(tmp_path / "run", [0])[0]
    torch.save(torch.load(ckpt)["model"], ckpt)  # weights only: the step comes from the name
    store = tmp_path / "store.zarr"
    ingest(str(store), checkpoints=[ckpt], **KWARGS)
    copy = tmp_path / "run" / "step_9.pth"
    shutil.copy(ckpt, copy)
    with pytest.raises(TgoError, match=r"step_9.pth \(step 9\) holds the weights of .*step_0.pth \(step 0\)"):
        ingest(str(store), checkpoints=[str(copy)], **KWARGS)
    ingest(str(store), checkpoints=[str(copy)], allow_duplicate_weights=True, **KWARGS)  # asked for: recorded
    ds = open_store(str(store))
    assert list(ds.checkpoint.values) == [0, 9]
    np.testing.assert_array_equal(ds.activations[0].values, ds.activations[1].values)
