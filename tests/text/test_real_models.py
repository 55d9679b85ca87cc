"""The two real models that ship in wheels: an encoder and a decoder, recorded from pydoc text."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.analyze import analyze
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
    without = analyze(open_store(str(path)), N.POOLED, progress=False, exclude_special=True,
                      exclude_first=True)[N.TOP1_SHARE_POOLED].values[0]
    if decoder:
        middle = slice(states // 3, 2 * states // 3)
        assert pooled[middle].max() > 0.9 and without[middle].max() < 0.9, (pooled, without)
    else:
        assert pooled.max() < 0.3 and np.abs(pooled - without).max() < 0.05, (pooled, without)



@pytest.mark.slow  # ~15 s beside the session's one GGUF load (shared with the test above)
def test_smollm2_records_causal_lm_gradients_through_the_cli(smollm2, tmp_path, capsys) -> None:
    """hf:smollm2 (a GGUF whose config names no architecture) loads as LlamaForCausalLM with the head tied
    to the embeddings, so `tgo ingest --gradients` has a loss; its gradients equal autograd of the
    next-token loss of logits h_L @ E^T computed from the base model alone, and the loss is that of a
    trained model (far below ln V, which an untrained or wrong head would give)."""
    from tests.support import run_cli

    assert type(smollm2).__name__ == "LlamaForCausalLM"
    embed = smollm2.get_input_embeddings().weight
    assert smollm2.get_output_embeddings().weight.data_ptr() == embed.data_ptr()
    store = str(tmp_path / "smollm2.zarr")
    text = {"seq_len": 16, "samples": 2}
    done = run_cli(["ingest", "--model", "hf:smollm2", "--data", "text:pydoc", "--seq-len", "16", "--samples", "2",
                    "--layers", "20,30", "--gradients", "--store", store, "--dtype", "float32", "--batch-size", "2",
                    "--device", "cpu", "--quiet"], capsys)
    assert done.returncode == 0, done.stderr
    ds = xr.open_zarr(store)
    assert ds.attrs[S.ATTR_LOSS]["kind"] == "causal_lm"
    grads = ds[S.GRADIENTS].isel(checkpoint=0).values
    assert grads.shape == (2, 2, 16, 576)

    batch = next(open_source("text:pydoc", **input_config(smollm2), **text).batches(2)).inputs
    ids, valid = torch.as_tensor(batch.ids), torch.as_tensor(batch.attention_mask)
    leaf = {}

    def hook(_m, _i, out):
        tensor = out[0] if isinstance(out, tuple) else out
        leaf["x"] = tensor.detach().clone().requires_grad_()
        return (leaf["x"], *out[1:]) if isinstance(out, tuple) else leaf["x"]

    handle = smollm2.base_model.layers[19].register_forward_hook(hook)  # hidden state 20
    try:
        last = smollm2.base_model(input_ids=ids, attention_mask=valid.long(), use_cache=False).last_hidden_state
        last.retain_grad()
        logits = (last @ embed.T).double()
        at = valid[:, :-1] & valid[:, 1:]
        loss = torch.nn.functional.cross_entropy(logits[:, :-1][at], ids[:, 1:][at], reduction="sum")
        loss.backward()
    finally:
        handle.remove()
        smollm2.zero_grad(set_to_none=True)
    per_token = float(loss.detach()) / int(at.sum())
    assert np.isfinite(per_token) and per_token < 0.6 * np.log(embed.shape[0]), per_token
    for stored, expected in ((grads[0], leaf["x"].grad), (grads[1], last.grad)):
        expected = expected.numpy()
        np.testing.assert_allclose(stored, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
