"""The two real models that ship in wheels: an encoder and a decoder, recorded from pydoc text."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.analyze import analyze
from tgo_analysis.statistics.frequency import text_params
from tgo_store import ingest
from tgo_store.capture.hf import tokenizer_of as model_tokenizer
from tgo_store.capture.models import input_config, model_description
from tgo_store.sources import open_source
from tgo_store.store import schema as S
from tgo_store.store.open import open_store

KW = {"batch_size": 8, "samples_per_block": 8, "device": "cpu", "progress": False, "dtype": "float32"}
TEXT = {"seq_len": 64, "samples": 8}  # one block of 8 sequences: the decoder runs ~2 s per forward here


@pytest.mark.parametrize(("name", "states", "features", "decoder"), [
    ("minilm", 7, 384, False),
    ("smollm2", 31, 576, True),
])
def test_real_model_store_equals_its_own_hidden_states(name, states, features, decoder, request, tmp_path) -> None:
    model = request.getfixturevalue(name)
    path = tmp_path / f"{name}.zarr"
    ingest(str(path), model_spec=f"hf:{name}", checkpoints=None, data_spec="text:pydoc", data_options=TEXT, **KW)
    ds = xr.open_zarr(str(path))
    act = ds[S.ACTIVATIONS]
    assert act.shape == (1, states, 8, 64, features)
    facts = ds.attrs[S.ATTR_MODEL]["transformers"]
    assert facts["final_norm_applied"] is decoder and facts["is_decoder"] is decoder
    assert facts == model_description(model, f"hf:{name}")["transformers"]
    special = ds[S.TOKEN_SPECIAL].values
    assert special[:, 0].all() is not decoder, "[CLS] opens every MiniLM sequence; SmolLM2's tokenizer adds no BOS"
    np.testing.assert_array_equal(special, np.isin(ds[S.TOKEN_ID].values, model_tokenizer(model).all_special_ids))
    batch = next(open_source("text:pydoc", **input_config(model), **TEXT).batches(8)).inputs
    np.testing.assert_array_equal(ds[S.TOKEN_ID].values, batch.ids)
    batch = batch[:3]  # packed sequences are independent: the reference forward runs on three
    with torch.no_grad():
        expected = model.base_model(input_ids=torch.as_tensor(batch.ids),
                                    attention_mask=torch.as_tensor(batch.attention_mask).long(),
                                    output_hidden_states=True).hidden_states
    assert len(expected) == states
    for layer in (0, states // 2, states - 1):
        np.testing.assert_allclose(act.isel(checkpoint=0, layer=layer, sample=slice(0, 3)).values, expected[layer].numpy(),
                                   rtol=1e-5, atol=1e-5 * float(expected[layer].abs().max()))

    # The profiles (Razzhigaev et al.; SPEC section 5): the decoder's first position carries massive
    # activations that take λ₁ of the pooled covariance in the middle layers; the encoder stays flat.
    pooled = analyze(open_store(str(path)), N.POOLED, progress=False)[N.TOP1_SHARE_POOLED].values[0]
    without = analyze(open_store(str(path)), N.POOLED, progress=False,
                      params=text_params(exclude_special=True, exclude_first=True))[N.TOP1_SHARE_POOLED].values[0]
    if decoder:
        middle = slice(states // 3, 2 * states // 3)
        assert pooled[middle].max() > 0.9 and without[middle].max() < 0.9, (pooled, without)
    else:
        assert pooled.max() < 0.3 and np.abs(pooled - without).max() < 0.05, (pooled, without)

