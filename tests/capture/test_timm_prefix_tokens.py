"""timm ViTs with a class token, with registers only, and with no prefix token at all: every
captured layer equals timm's own ``forward_intermediates`` (issue 17, item 8)."""

from __future__ import annotations

import pytest
import torch

from tests.support import TINY_VIT, TINY_VIT_SPEC, save_checkpoints, tiny_vit
from tgo_app.cli import main
from tgo_store import open_store
from tgo_store.capturers import make_capturer
from tgo_store.options import parse_kwargs
from tgo_store.store import schema as S

KINDS = {  # model options -> the token kinds in sequence order (16 patches on a 4 x 4 grid)
    "class token": ({}, ["cls"] + ["patch"] * 16),
    "registers only": ({"class_token": False, "reg_tokens": 4, "global_pool": "avg"}, ["register"] * 4 + ["patch"] * 16),
    "class token and registers": ({"reg_tokens": 2}, ["cls"] + ["register"] * 2 + ["patch"] * 16),
    "no prefix": ({"class_token": False, "global_pool": "avg"}, ["patch"] * 16),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_layer_equals_forward_intermediates(kind) -> None:
    options, kinds = KINDS[kind]
    torch.manual_seed(0)
    model = tiny_vit(**options).eval()
    x = torch.randn(2, 1, 16, 16)  # a batch of 2: a wrong unpacking would split the batch, not the tokens
    capturer = make_capturer(model, example=x)
    got = capturer(capturer.prepare(x, "cpu", torch.float32))
    with torch.inference_mode():
        blocks = model.forward_intermediates(x, return_prefix_tokens=True, norm=False, output_fmt="NLC",
                                             intermediates_only=True)
        embedded = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
    expected = [embedded] + [torch.cat([out[1], out[0]], dim=1) if isinstance(out, tuple) else out for out in blocks]
    assert got.shape == (3, 2, len(kinds), 16) and capturer.token_layout.kinds == kinds
    for layer, want in enumerate(expected):
        torch.testing.assert_close(got[layer], want, rtol=0, atol=0)
    picked = make_capturer(model, tokens=[len(kinds) - 1, 0], example=x)  # a token subset, prefix included
    torch.testing.assert_close(picked(picked.prepare(x, "cpu", torch.float32)), got[:, :, [0, len(kinds) - 1]],
                               rtol=0, atol=0)


def test_model_kwargs_read_python_literals() -> None:
    assert parse_kwargs(["class_token=False", "fc_norm=None", "dynamic_img_size=True", "img_size=(16, 16)",
                         "global_pool=avg", "depth=2", "act=false"]) == {
        "class_token": False, "fc_norm": None, "dynamic_img_size": True, "img_size": (16, 16),
        "global_pool": "avg", "depth": 2, "act": False}
    assert parse_kwargs(["{'class_token': False}"]) == {"class_token": False}


def test_a_no_class_token_vit_through_the_cli(tmp_path, capsys) -> None:
    """`--model-kwargs class_token=False` (Python's spelling) builds the model without a class token."""
    ckpts = save_checkpoints(tmp_path / "ckpt", [0], class_token=False, global_pool="avg")
    store = tmp_path / "gap.zarr"
    args = ["ingest", "--model", TINY_VIT_SPEC, "--checkpoints", ckpts[0], "--data", "synthetic:16", "--store",
            str(store), "--batch-size", "8", "--samples-per-block", "8", "--device", "cpu", "--quiet",
            "--model-kwargs", "class_token=False", "--model-kwargs", "global_pool=avg"]
    for key, value in TINY_VIT.items():
        args += ["--model-kwargs", f"{key}={value}"]
    main(args)
    main(["info", str(store)])
    out = capsys.readouterr().out
    assert "complete" in out, out
    ds = open_store(str(store))
    assert ds.sizes["token"] == 16 and set(ds.token_kind.values) == {"patch"}
    assert ds.attrs[S.ATTR_MODEL]["kwargs"]["class_token"] is False
