"""Masked-LM stores record which positions saw the mask token, and frequency buckets use it
(issue 18 item 6): a masked position is bucketed by the id the model saw, not by token_id."""

from __future__ import annotations

import numpy as np
import pytest

from tests.text.tiny_hf import minilm_tokenizer, save
from tgo_analysis import names as N
from tgo_analysis.analyze import analyze
from tgo_analysis.kernels.buckets import frequency_edges, position_buckets
from tgo_store import ingest, open_store
from tgo_store.capture.losses import MASKED_LM, LossSpec, masked_inputs
from tgo_store.store import schema as S

torch = pytest.importorskip("torch")


def test_masked_positions_are_stored_and_bucketed_by_the_mask_token(tmp_path) -> None:
    import transformers as T

    tok = minilm_tokenizer()
    torch.manual_seed(0)
    cfg = T.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, max_position_embeddings=64)
    folder = save(T.BertForMaskedLM(cfg).eval(), tok, tmp_path / "bert")
    url = str(tmp_path / "mlm.zarr")
    ingest(url, model_spec=f"hf:{folder}", checkpoints=None, data_spec="text:pydoc", dtype="float32", batch_size=4,
           device="cpu", progress=False, data_options={"seq_len": 24, "samples": 8, "padding": "right"},
           gradients=True, loss=MASKED_LM, mask_rate=0.3, mask_seed=5)
    ds = open_store(url)
    assert S.TOKEN_MASKED in ds.coords and ds[S.TOKEN_MASKED].dims == (S.SAMPLE, S.TOKEN)
    ids, mask = ds[S.TOKEN_ID].values.astype(np.int64), ds[S.ATTENTION_MASK].values
    special = ds[S.TOKEN_SPECIAL].values
    _, where = masked_inputs(torch.as_tensor(np.where(mask, ids, 0)), torch.as_tensor(mask), torch.as_tensor(special),
                             ds[S.SAMPLE].values, LossSpec(MASKED_LM, mask_rate=0.3, seed=5), tok.mask_token_id)
    np.testing.assert_array_equal(ds[S.TOKEN_MASKED].values, where.numpy())  # what the gradient pass masked
    assert where.any() and ds[S.TOKEN_MASKED].attrs["mask_token_id"] == tok.mask_token_id
    res = analyze(ds, N.TOP1_SHARE_BY_FREQUENCY, progress=False, frequency_buckets=4)
    counts = ds[S.VOCAB_COUNT].values
    edges = frequency_edges(counts, 4)
    seen = np.where(where.numpy(), tok.mask_token_id, ids)
    want = np.bincount(position_buckets(seen, counts, edges, mask).ravel() + 1, minlength=edges.size)[1:]
    assert res.attrs["frequency_bucket_positions"] == [int(v) for v in want]
    naive = np.bincount(position_buckets(ids, counts, edges, mask).ravel() + 1, minlength=edges.size)[1:]
    assert naive.sum() - want.sum() == where.numpy().sum()  # the masked positions left their words' buckets
