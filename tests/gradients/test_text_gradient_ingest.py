"""`tgo ingest --model hf:PATH --data text:pydoc --gradients`: causal LM gradients of a tiny LLaMA."""

from __future__ import annotations

import numpy as np
import pytest

from tests.text.tiny_hf import bpe_tokenizer, build, save
from tgo_store import ingest, open_store
from tgo_store.capture.losses import CAUSAL_LM, LossSpec, language_gradients
from tgo_store.store import schema as S

torch = pytest.importorskip("torch")


def test_text_store_records_causal_lm_gradients(tmp_path):
    from tgo_store.sources.base import TokenBatch

    tok = bpe_tokenizer()
    model = build("llama", len(tok))
    folder = save(model, tok, tmp_path / "llama")
    url = str(tmp_path / "text.zarr")
    ingest(url, model_spec=f"hf:{folder}", checkpoints=None, data_spec="text:pydoc", dtype="float32",
           batch_size=4, device="cpu", progress=False, data_options={"seq_len": 24, "samples": 6, "padding": "right"},
           gradients=True)
    ds = open_store(url)
    assert ds.attrs[S.ATTR_LOSS]["kind"] == CAUSAL_LM
    assert ds[S.GRADIENTS].shape == ds[S.ACTIVATIONS].shape
    ids = ds[S.TOKEN_ID].values.astype(np.int64)
    mask = ds[S.ATTENTION_MASK].values
    special = ds[S.TOKEN_SPECIAL].values if S.TOKEN_SPECIAL in ds else np.zeros_like(mask)
    tokens = TokenBatch(torch.as_tensor(np.where(mask, ids, 0)), torch.as_tensor(mask), torch.as_tensor(special))
    layers = list(ds[S.LAYER].values)
    _, grads = language_gradients(model, layers, tokens, ds[S.SAMPLE].values, LossSpec(CAUSAL_LM))
    stored = ds[S.GRADIENTS].isel(checkpoint=0).values
    for i in range(len(layers)):
        np.testing.assert_allclose(stored[i], grads[i].numpy(), rtol=1e-4, atol=1e-6)
    assert np.abs(stored).sum() > 0
