"""The Recorder uses its live model and probe tensors directly (issue 28): no registry of live models
keeps one alive, no probe file is written, and the stored model name keeps its old spelling."""

from __future__ import annotations

import gc
import tempfile
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support import tiny_vit
from tgo_store import Recorder, open_store
from tgo_store.capture.models import build_model
from tgo_store.errors import TgoError


def _probe_files() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("tgo-probe-*")}


def test_live_models_live_only_as_long_as_their_recorder(tmp_path) -> None:
    refs = []
    before = _probe_files()
    for run in range(3):  # three training runs, one after the other, in one process
        torch.manual_seed(run)
        model = tiny_vit()
        rec = Recorder(str(tmp_path / f"run{run}.zarr"), model, torch.randn(6, 1, 16, 16), model_name=f"run{run}",
                       batch_size=4)
        rec.capture(step=0)
        refs.append(weakref.ref(model))
        del rec, model
        gc.collect()
        assert all(ref() is None for ref in refs)  # nothing of tgo keeps a finished run's model
    assert _probe_files() == before  # the probe inputs reach the store as bytes, never as a temporary file
    ds = open_store(str(tmp_path / "run2.zarr"))
    assert ds.attrs["model"]["name"] == "tgo_store.recorder:_live_run2"  # the stored spelling of earlier stores
    with pytest.raises(TgoError, match="live model of a Recorder"):
        build_model(ds.attrs["model"]["name"])


def test_a_damaged_probe_file_of_an_older_recorder_changes_nothing(tmp_path) -> None:
    """Issue 30: a killed write of tgo-probe-<hash>.npz broke every later Recorder with those inputs."""
    torch.manual_seed(0)
    model, images = tiny_vit(), torch.rand(6, 1, 16, 16)
    clean = Recorder(str(tmp_path / "clean.zarr"), model, images, batch_size=4)
    clean.capture(step=0)
    name = clean.options.data_spec  # the probe's old file name, kept as the dataset's name
    damaged = Path(name)
    owned = not damaged.exists()
    try:
        if owned:
            damaged.write_bytes(b"PK\x03\x04 truncated")
        again = Recorder(str(tmp_path / "again.zarr"), model, images, batch_size=4)
        again.capture(step=0)
    finally:
        if owned:
            damaged.unlink()
    a, b = open_store(str(tmp_path / "clean.zarr")), open_store(str(tmp_path / "again.zarr"))
    assert a.attrs["dataset"] == b.attrs["dataset"]
    np.testing.assert_array_equal(a["activations"].values, b["activations"].values)
