"""The Recorder's live models are reached through a model-spec loader that keeps none alive (issue 17)."""

from __future__ import annotations

import gc

import pytest
import torch

from tests.support import tiny_vit
from tgo_store import Recorder, open_store
from tgo_store.capture import live
from tgo_store.capture.models import build_model
from tgo_store.errors import TgoError


def test_live_models_live_only_as_long_as_their_recorder(tmp_path) -> None:
    before = live.live_count()
    specs = []
    for run in range(3):  # three training runs, one after the other, in one process
        torch.manual_seed(run)
        model = tiny_vit()
        rec = Recorder(str(tmp_path / f"run{run}.zarr"), model, torch.randn(6, 1, 16, 16), model_name=f"run{run}",
                       batch_size=4)
        rec.capture(step=0)
        assert build_model(rec.options.model_spec) is model  # the spec builds the live model itself
        specs.append(rec.options.model_spec)
        assert live.live_count() == before + 1  # the previous runs' models are gone already
        del rec, model
        gc.collect()
    assert live.live_count() == before
    for spec in specs:
        with pytest.raises(TgoError, match="no longer exists"):
            build_model(spec)
    ds = open_store(str(tmp_path / "run2.zarr"))
    assert ds.attrs["model"]["name"] == "tgo_store.recorder:_live_run2"  # the stored spelling of earlier stores
