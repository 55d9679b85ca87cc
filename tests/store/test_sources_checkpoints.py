"""Data sources and checkpoint files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support import tiny_vit
from tgo_store.capture.checkpoints import (
    load_checkpoint_into,
    load_state_dict,
    resolve_checkpoints,
    step_from_name,
)
from tgo_store.errors import TgoError
from tgo_store.sources import open_source

FMT = {"image_size": 16, "in_chans": 1, "mean": (0.5,), "std": (0.5,)}


def test_digits_splits_are_fixed_disjoint_and_complete() -> None:
    train, test = open_source("sklearn:digits:train", **FMT), open_source("sklearn:digits:test", **FMT)
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert not set(train.sample_ids) & set(test.sample_ids)
    again = open_source("sklearn:digits:test", **FMT)
    b1, b2 = next(test.batches(50, start=100)), next(again.batches(50, start=100))
    np.testing.assert_array_equal(b1.inputs, b2.inputs)
    np.testing.assert_array_equal(b1.sample_ids, test.sample_ids[100:150])
    assert b1.inputs.shape == (50, 1, 16, 16) and b1.inputs.dtype == np.float32


def test_image_folder_npy_and_npz(tmp_path) -> None:
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray((np.random.default_rng(i).random((20, 24, 3)) * 255).astype(np.uint8)).save(
                tmp_path / "imgs" / cls / f"{i}.png")
    folder = open_source(str(tmp_path / "imgs"), **FMT)
    assert len(folder) == 6 and list(folder.labels) == [0, 0, 0, 1, 1, 1]
    assert next(folder.batches(4)).inputs.shape == (4, 1, 16, 16)
    np.save(tmp_path / "a.npy", np.random.default_rng(0).random((5, 8, 8)))
    assert len(open_source(str(tmp_path / "a.npy"), **FMT)) == 5
    np.savez(tmp_path / "b.npz", images=np.zeros((4, 3, 8, 8)), labels=np.arange(4))
    src = open_source(str(tmp_path / "b.npz"), **FMT)
    assert list(src.labels) == [0, 1, 2, 3]


def test_bad_data_is_refused(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TgoError, match="holds no images"):
        open_source(str(tmp_path / "empty"), **FMT)
    np.save(tmp_path / "five.npy", np.zeros((2, 5, 8, 8)))
    with pytest.raises(TgoError, match="5 channels but the model expects 1"):
        open_source(str(tmp_path / "five.npy"), **FMT)
    np.save(tmp_path / "flat.npy", np.zeros((2, 8)))
    with pytest.raises(TgoError, match="expected"):
        open_source(str(tmp_path / "flat.npy"), **FMT)


def test_checkpoint_formats_and_steps(tmp_path) -> None:
    from safetensors.torch import save_file

    model = tiny_vit()
    state = model.state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "global_step": 77}, tmp_path / "a.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "epoch3.safetensors"))
    torch.save(state, tmp_path / "plain.pth")
    refs = resolve_checkpoints([str(tmp_path / "a.pt"), str(tmp_path / "epoch3.safetensors"), str(tmp_path / "plain.pth")])
    assert [r.step for r in refs] == [2, 3, 77]  # plain.pth: no step anywhere -> its index
    for ref in refs:
        fresh = tiny_vit()
        load_checkpoint_into(fresh, ref)
        torch.testing.assert_close(fresh.state_dict()["head.weight"], state["head.weight"])
    assert step_from_name("runs/ckpt-1200.pth") == 1200 and step_from_name("x/step_5.pt") == 5


def test_memory_url_checkpoints() -> None:
    import fsspec

    with fsspec.open("memory://ck/step_9.pth", "wb") as f:
        torch.save(tiny_vit().state_dict(), f)
    refs = resolve_checkpoints("memory://ck/*.pth")
    assert [r.step for r in refs] == [9] and refs[0].url.startswith("memory://")
    assert "head.bias" in load_state_dict(refs[0].url)


def test_bad_checkpoints_are_refused(tmp_path) -> None:
    with pytest.raises(TgoError, match="does not exist"):
        resolve_checkpoints(str(tmp_path / "missing.pth"))
    torch.save(tiny_vit().state_dict(), tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(TgoError, match="corrupt or truncated"):
        resolve_checkpoints(str(tmp_path / "cut.pth"))
    torch.save(tiny_vit(embed_dim=24).state_dict(), tmp_path / "other.pth")
    with pytest.raises(TgoError, match="another architecture"):
        load_checkpoint_into(tiny_vit(), resolve_checkpoints(str(tmp_path / "other.pth"))[0])
