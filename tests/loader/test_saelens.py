"""SAELens as a tested integration (SPEC 9, issue 31): its own ``SAETrainer`` trains from
``loader.tensors()`` with no adapter, and its own ``ActivationsStore`` reads ``tgo export --format
saelens`` offline (``cached_activations_path``) and feeds a trainer. Skipped without sae-lens
(``pip install 'tgo[saelens]'``). References: the store read with plain xarray, float64 numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from tgo_store import ActivationLoader
from tgo_store.loader.export import export

sae_lens = pytest.importorskip("sae_lens", reason="sae-lens is not installed (pip install 'tgo[saelens]')")

pytestmark = pytest.mark.slow  # importing sae_lens takes seconds, and the llama_store fixture ingests


def layer_matrix(store: str, layer: int) -> np.ndarray:
    """Every position of the layer (the store holds no padding), float64, read with plain xarray."""
    ds = xr.open_zarr(store)
    return ds.activations.values[-1, list(ds.layer.values).index(layer)].reshape(-1, ds.sizes["feature"]) \
        .astype(np.float64)


def fvu(sae, x: np.ndarray) -> float:
    """Fraction of variance unexplained by the SAE's reconstruction, in float64."""
    with torch.no_grad():
        recon = sae.decode(sae.encode(torch.from_numpy(x.astype(np.float32)))).double().numpy()
    return float(((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def train(data, d_in: int, steps: int, batch: int):
    from sae_lens import SAETrainer, StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig

    torch.manual_seed(0)
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d_in, d_sae=4 * d_in, l1_coefficient=1e-3))
    cfg = SAETrainerConfig(total_training_samples=steps * batch, train_batch_size_samples=batch, lr=3e-3,
                           lr_end=3e-3, device="cpu")
    before = {k: v.clone() for k, v in sae.state_dict().items()}
    trainer = SAETrainer(cfg, sae, data_provider=data)
    trained = trainer.fit()
    return trainer, trained, before


def test_saetrainer_trains_from_loader_tensors_with_no_adapter(llama_store) -> None:
    x = layer_matrix(llama_store, 1)
    loader = ActivationLoader(llama_store, 1, batch_size=64, buffer_size=256)
    assert len(loader) * 64 >= x.shape[0]
    trainer, sae, before = train(loader.tensors(), loader.n_features, steps=6 * len(loader), batch=64)
    assert trainer.n_training_steps == 6 * len(loader) and loader.epoch >= 5  # ran on past one epoch
    initial = sae.__class__(sae.cfg)
    initial.load_state_dict(before)
    start, end = fvu(initial, x), fvu(sae, x)
    assert start > 0.9 and end < 0.2, (start, end)  # 0.99 -> 0.04 here


@pytest.mark.filterwarnings("ignore:All samples in the training dataset have been exhausted:UserWarning")
def test_saelens_activations_store_reads_the_export_offline_and_trains(llama_store, tmp_path) -> None:
    from sae_lens.training.activations_store import ActivationsStore

    out = tmp_path / "cache"
    summary = export("saelens", llama_store, 1, out, shard_size=8)
    ds = xr.open_zarr(llama_store)
    t, d = ds.sizes["token"], ds.sizes["feature"]
    store = ActivationsStore(model=None, dataset=None, streaming=False, hook_name="blocks.0.hook_resid_post",
                             hook_head_index=None, context_size=t, d_in=d, n_batches_in_buffer=4,
                             total_training_tokens=10**6, store_batch_size_prompts=4, train_batch_size_tokens=64,
                             prepend_bos=False, normalize_activations="none", device=torch.device("cpu"),
                             dtype="float32", cached_activations_path=str(out))
    assert f"hook_name={store.hook_name}, context_size={t}, d_in={d}" in summary.note
    acts, ids = store.get_raw_llm_batch()  # SAELens's own read of the first 4 rows
    import datasets

    first = datasets.load_from_disk(str(out)).with_format("numpy")[:4]["sample"]
    where = np.searchsorted(ds.sample.values, first)
    np.testing.assert_array_equal(acts.numpy(), ds.activations.values[0, 1][where].reshape(-1, d))
    np.testing.assert_array_equal(ids.numpy(), ds.token_id.values[where].reshape(-1))
    x = layer_matrix(llama_store, 1)
    _, sae, before = train(store, d, steps=60, batch=64)  # SAELens's ActivationsStore is the data provider
    initial = sae.__class__(sae.cfg)
    initial.load_state_dict(before)
    start, end = fvu(initial, x), fvu(sae, x)
    assert start > 0.9 and end < 0.3, (start, end)  # 0.99 -> 0.08 here
