"""Data sources and checkpoint loading: determinism, splits, formats, steps, URLs and refusals.

(One file for what tests/capture and tests/store each tested before, issue 17.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.support import tiny_vit
from tgo_store.capture.checkpoints import (
    load_checkpoint_into,
    load_state_dict,
    read_step,
    resolve_checkpoints,
    step_from_name,
)
from tgo_store.errors import TgoError
from tgo_store.sources import open_source

GREY = {"image_size": 8, "in_chans": 1, "mean": (0.5,), "std": (0.25,)}
FMT = {"image_size": 16, "in_chans": 1, "mean": (0.5,), "std": (0.5,)}


def test_synthetic_is_deterministic_and_resumes_at_any_sample() -> None:
    src = open_source("synthetic:10:3", **GREY)
    full = np.concatenate([b.inputs for b in src.batches(4)])
    again = np.concatenate([b.inputs for b in open_source("synthetic:10:3", **GREY).batches(3)])
    np.testing.assert_array_equal(full, again)
    tail = list(src.batches(4, start=7, stop=10))
    np.testing.assert_array_equal(np.concatenate([b.inputs for b in tail]), full[7:10])
    assert np.concatenate([b.sample_ids for b in tail]).tolist() == [7, 8, 9]
    assert open_source("synthetic:10:4", **GREY).fingerprint() != src.fingerprint()
    assert full.dtype == np.float32 and full.shape == (10, 1, 8, 8)


def test_digits_is_the_real_dataset_normalised_and_resized() -> None:
    from sklearn.datasets import load_digits

    src = open_source("sklearn:digits", **GREY)
    assert len(src) == 1797
    batch = next(src.batches(5))
    raw = load_digits().images[:5] / 16.0
    np.testing.assert_allclose(batch.inputs[:, 0] * 0.25 + 0.5, raw, atol=1e-6)  # 8x8: no resize
    rgb = next(open_source("sklearn:digits:test", image_size=16, in_chans=3).batches(2)).inputs
    assert rgb.shape == (2, 3, 16, 16)
    np.testing.assert_array_equal(rgb[:, 0], rgb[:, 2])  # grey replicated to every channel


def test_image_folder_labels_conversion_and_fingerprint(tmp_path) -> None:
    for cls, colour in (("b_cat", (255, 0, 0)), ("a_dog", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (12, 10), colour).save(tmp_path / cls / "0.png")
    src = open_source(str(tmp_path), **GREY)
    assert src.labels.tolist() == [0, 1]  # sorted class folders: a_dog, b_cat
    batch = next(src.batches(8))
    assert batch.inputs.shape == (2, 1, 8, 8)
    grey = batch.inputs[:, 0, 0, 0] * 0.25 + 0.5
    np.testing.assert_allclose(grey, [0.114 * 255 / 255, 0.299], atol=0.01)  # PIL's L conversion
    before = src.fingerprint()
    Image.new("RGB", (4, 4)).save(tmp_path / "a_dog" / "1.png")
    assert open_source(f"file://{tmp_path}", **GREY).fingerprint() != before


def test_bad_sources_say_what_was_found(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TgoError, match="holds no images"):
        open_source(str(tmp_path / "empty"), **GREY)
    (tmp_path / "bad" / "x").mkdir(parents=True)
    (tmp_path / "bad" / "x" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(TgoError, match="cannot read image"):
        next(open_source(str(tmp_path / "bad"), **GREY).batches(1))
    np.save(tmp_path / "two.npy", np.zeros((3, 2, 8, 8), np.float32))
    with pytest.raises(TgoError, match="2 channels but the model expects 1"):
        open_source(str(tmp_path / "two.npy"), **GREY)
    np.savez(tmp_path / "nolabel.npz", pixels=np.zeros((2, 8, 8)))
    with pytest.raises(TgoError, match="no 'images' array"):
        open_source(str(tmp_path / "nolabel.npz"), **GREY)
    with pytest.raises(TgoError, match="unknown data spec"):
        open_source("hub:imagenet", **GREY)
    with pytest.raises(TgoError, match="synthetic:N"):
        open_source("synthetic:many", **GREY)


def test_npz_with_labels_nhwc_uint8(tmp_path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(4))
    src = open_source(
        str(tmp_path / "d.npz"), image_size=8, in_chans=3, mean=(0, 0, 0), std=(1, 1, 1)
    )
    batch = next(src.batches(4))
    np.testing.assert_allclose(batch.inputs, images.transpose(0, 3, 1, 2) / 255.0, atol=1e-6)
    assert batch.labels.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("name", "step"),
    [
        ("runs/step_1200.pth", 1200),
        ("runs/ckpt-1200.pth", 1200),
        ("x/step_5.pt", 5),
        ("ckpt-300.pt", 300),
        ("epoch3.safetensors", 3),
        ("vit_small_patch8_224_e7.pth", 7),
        ("memory://b/checkpoint=42.pt", 42),
        ("final.pth", None),
    ],
)
def test_step_from_name(name: str, step: int | None) -> None:
    assert step_from_name(name) == step


def test_step_from_file_beats_name_and_index() -> None:
    assert read_step("step_5.pth", {"global_step": 9}, 0) == 9
    assert read_step("step_5.pth", {"epoch": True}, 0) == 5  # a bool is not a step
    assert read_step("final.pth", None, 4) == 4


def test_wrappers_prefixes_and_ema(tmp_path) -> None:
    model = tiny_vit()
    state = model.state_dict()
    ema = {k: v + 1 for k, v in state.items()}
    torch.save(
        {"model": {f"_orig_mod.{k}": v for k, v in state.items()}, "model_ema": ema},
        tmp_path / "both.pt",
    )
    torch.testing.assert_close(
        load_state_dict(str(tmp_path / "both.pt"))["head.bias"], state["head.bias"]
    )
    chosen = load_state_dict(str(tmp_path / "both.pt"), prefer_ema=True)
    torch.testing.assert_close(chosen["head.bias"], ema["head.bias"])
    torch.save({"state_dict_ema": ema, "step": 3}, tmp_path / "ema_only.pt")
    with pytest.raises(TgoError, match="prefer_ema"):
        load_state_dict(str(tmp_path / "ema_only.pt"))


def test_refs_are_sorted_by_step_and_hash_the_bytes(tmp_path) -> None:
    import hashlib

    for step in (20, 3, 100):
        torch.save({"model": tiny_vit().state_dict(), "step": step}, tmp_path / f"ck_{step}.pt")
    refs = resolve_checkpoints(str(tmp_path / "ck_*.pt"))
    assert [r.step for r in refs] == [3, 20, 100]
    assert refs[0].sha256 == hashlib.sha256((tmp_path / "ck_3.pt").read_bytes()).hexdigest()
    with pytest.raises(TgoError, match="no checkpoint matches"):
        resolve_checkpoints(str(tmp_path / "none_*.pt"))


def test_another_architecture_names_keys_and_the_fix(tmp_path) -> None:
    torch.save(tiny_vit(reg_tokens=2).state_dict(), tmp_path / "reg.pth")
    ref = resolve_checkpoints(str(tmp_path / "reg.pth"))[0]
    with pytest.raises(TgoError, match=r"unexpected: reg_token.*--model"):
        load_checkpoint_into(tiny_vit(), ref)


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
