"""`ingest(..., gradients=True)` and `Recorder(..., gradients=True)`: stored ∂L/∂h, loss attr, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support import DATA, ingest_kwargs, save_checkpoints, tiny_vit
from tgo_store import Recorder, ingest, open_store
from tgo_store.capture.losses import CLASSIFICATION, LossSpec, classification_gradients
from tgo_store.errors import TgoError
from tgo_store.store import schema as S

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return save_checkpoints(tmp_path_factory.mktemp("ckpt"), [0, 10])


@pytest.fixture(scope="module")
def grad_store(ckpts, tmp_path_factory):
    url = str(tmp_path_factory.mktemp("store") / "g.zarr")
    ingest(url, **ingest_kwargs(ckpts[:1], dtype="float32", gradients=True))
    return url


def test_stored_gradients_equal_autograd_for_every_layer(grad_store, ckpts):
    from tgo_store.capture.checkpoints import load_checkpoint_into, resolve_checkpoints
    from tgo_store.sources import open_source

    ds = open_store(grad_store)
    assert ds[S.GRADIENTS].dims == ds[S.ACTIVATIONS].dims and ds[S.GRADIENTS].shape == ds[S.ACTIVATIONS].shape
    assert ds[S.GRADIENTS].encoding["chunks"] == ds[S.ACTIVATIONS].encoding["chunks"]
    assert ds.attrs[S.ATTR_LOSS]["kind"] == CLASSIFICATION and ds.attrs[S.ATTR_LOSS]["reduction"] == "sum"
    assert ds.attrs[S.ATTR_SCHEMA] == S.TEXT_SCHEMA_VERSION
    model = tiny_vit().eval()
    load_checkpoint_into(model, resolve_checkpoints(ckpts[0])[0])
    batch = next(open_source(DATA, image_size=16, in_chans=1, mean=(0.5,), std=(0.5,)).batches(10, start=70))
    states, grads = classification_gradients(model, ["norm_pre", "blocks.0", "blocks.1"],
                                             torch.from_numpy(batch.inputs), batch.labels, LossSpec(CLASSIFICATION))
    for layer in range(3):
        stored = ds[S.GRADIENTS].isel(checkpoint=0, layer=layer, sample=slice(70, 80)).values
        np.testing.assert_allclose(stored, grads[layer].numpy(), rtol=1e-5, atol=1e-7)
        assert np.abs(stored).sum() > 0
        np.testing.assert_allclose(ds[S.ACTIVATIONS].isel(checkpoint=0, layer=layer, sample=slice(70, 80)).values,
                                   states[layer].numpy(), rtol=1e-6, atol=1e-6)


def test_rerun_writes_nothing_and_append_keeps_the_loss(grad_store, ckpts):
    again = ingest(grad_store, **ingest_kwargs(ckpts[:1], dtype="float32", gradients=True))
    assert again.blocks_written == 0
    more = ingest(grad_store, **ingest_kwargs(ckpts, dtype="float32", gradients=True))
    assert more.blocks_written > 0
    ds = open_store(grad_store)
    assert ds[S.GRADIENTS].shape[0] == 2 and np.abs(ds[S.GRADIENTS].isel(checkpoint=1).values).sum() > 0


def test_append_without_gradients_or_with_another_loss_is_refused(grad_store, ckpts, tmp_path):
    with pytest.raises(TgoError, match="--gradients"):
        ingest(grad_store, **ingest_kwargs(ckpts, dtype="float32"))
    plain = str(tmp_path / "plain.zarr")
    ingest(plain, **ingest_kwargs(ckpts[:1], dtype="float32"))
    with pytest.raises(TgoError, match="without gradients") as info:
        ingest(plain, **ingest_kwargs(ckpts, dtype="float32", gradients=True))
    assert "\n" not in str(info.value)
    assert S.GRADIENTS not in open_store(plain) and open_store(plain)[S.ACTIVATIONS].shape[0] == 1


def test_gradients_without_labels_are_refused_before_the_store_exists(ckpts, tmp_path):
    url = tmp_path / "nolabels.zarr"
    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(0).random((20, 16, 16)).astype(np.float32))  # no labels
    with pytest.raises(TgoError, match="labels") as info:
        ingest(str(url), **ingest_kwargs(ckpts[:1], data_spec=str(images), gradients=True))
    assert "\n" not in str(info.value)
    assert not url.exists()


def test_recorder_records_gradients_and_restores_mode(tmp_path):
    torch.manual_seed(0)
    model = tiny_vit().train()
    probe = torch.randn(12, 1, 16, 16)
    labels = np.arange(12) % 10
    rec = Recorder(str(tmp_path / "live.zarr"), model, probe, labels=labels, batch_size=5, dtype="float32",
                   gradients=True)
    rec.capture(step=0)
    assert model.training and all(p.grad is None for p in model.parameters())
    ds = open_store(str(tmp_path / "live.zarr"))
    model.eval()
    _, grads = classification_gradients(model, ["norm_pre", "blocks.0", "blocks.1"], probe, labels,
                                        LossSpec(CLASSIFICATION))
    for layer in range(3):
        np.testing.assert_allclose(ds[S.GRADIENTS].isel(checkpoint=0, layer=layer).values, grads[layer].numpy(),
                                   rtol=1e-5, atol=1e-7)


def test_cli_gradients_with_an_lm_loss_on_images_is_one_line(ckpts, tmp_path, capsys):
    from tests.support import cli_args
    from tgo_app.cli import main

    store = tmp_path / "cli.zarr"
    with pytest.raises(SystemExit) as done:
        main(cli_args(ckpts[0], str(store), "--gradients", "--loss", "causal_lm"))
    err = capsys.readouterr().err
    assert done.value.code == 2, err
    assert err.strip().count("\n") == 0 and "causal_lm" in err and "Traceback" not in err
    assert not store.exists()
