"""The last hidden state of a decoder follows its final norm (issue 18 item 9): its layer_name
says so, the pooled results list it in their attrs, and the anisotropy profile can leave it out."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.analyze import analyze
from tgo_analysis.report import language as L
from tgo_store.capture.hf_model import layer_names
from tgo_store.store import schema as S
from tgo_store.store.schema import after_final_norm


def test_decoder_last_layer_is_named_for_the_final_norm() -> None:
    pytest.importorskip("torch")
    from tests.text.tiny_hf import build

    llama, bert = layer_names(build("llama", 50)), layer_names(build("bert", 50))
    assert llama[-1] == "model.norm after model.layers.1" and after_final_norm(llama[-1])
    assert not any(after_final_norm(n) for n in (*llama[:-1], *bert))
    assert bert[-1].endswith("layer.1")


def test_profile_with_and_without_the_final_norm_layer() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 20, 4, 8)).astype(np.float32)
    names = ["model.embed_tokens", "model.layers.0", "model.norm after model.layers.1"]
    ds = xr.Dataset({S.ACTIVATIONS: (S.DIMS, x)}, coords={S.LAYER: np.arange(3), S.LAYER_NAME: (S.LAYER, names)})
    res = analyze(ds.chunk({S.SAMPLE: 10}), N.TOP1_SHARE_POOLED, progress=False)
    assert res.attrs["layers_after_final_norm"] == [2]
    assert L.final_norm_layers(res) == [2]
    assert list(L.without_final_norm(res)[N.LAYER].values) == [0, 1]
    with_it, without = L.pooled_anisotropy(res), L.pooled_anisotropy(res, final_norm=False)
    xs = [line.get_xdata() for line in without.axes[0].get_lines()]
    assert all(2 not in np.asarray(v) for v in xs)
    assert any(2 in np.asarray(line.get_xdata()) for line in with_it.axes[0].get_lines())
    assert "final norm" in with_it.axes[0].get_title()


def test_the_ingest_attribute_names_the_final_norm_layers_and_old_stores_fall_back_to_layer_names() -> None:
    names = ["model.embed_tokens", "model.layers.0", "model.norm after model.layers.1"]
    assert S.final_norm_attrs([4, 5, 6], names) == {S.ATTR_FINAL_NORM_LAYERS: [6]}
    assert S.final_norm_attrs([0, 1], ["blocks.0", "blocks.1"]) == {}  # no final norm: the store is unchanged
    x = np.zeros((1, 3, 4, 2, 3), np.float32)
    old = xr.Dataset({S.ACTIVATIONS: (S.DIMS, x)}, coords={S.LAYER: [4, 5, 6], S.LAYER_NAME: (S.LAYER, names)})
    assert S.final_norm_layers(old) == [6]  # ingested before the attribute: read from layer_name
    new = old.assign_attrs({S.ATTR_FINAL_NORM_LAYERS: [5]})
    assert S.final_norm_layers(new) == [5]  # the attribute is what the ingest recorded
