"""Capture and model building, checked against timm's own computations and hand-made models."""

from __future__ import annotations

import json

import pytest
import torch

from tgo_store.capture.models import build_model, input_config, model_description
from tgo_store.capturers import make_capturer
from tgo_store.errors import TgoError


def test_layer_zero_is_patch_embedding_plus_position_embedding(tiny_vit) -> None:
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        patches = tiny_vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
        cls = tiny_vit.cls_token.expand(2, -1, -1)
        expected = torch.cat([cls, patches], dim=1) + tiny_vit.pos_embed
    got = make_capturer(tiny_vit, layers=[0])(x)
    torch.testing.assert_close(got[0], expected, rtol=1e-6, atol=1e-6)


def test_last_layer_is_the_pre_norm_output_of_the_model(tiny_vit) -> None:
    x = torch.randn(2, 1, 16, 16)
    last = make_capturer(tiny_vit, layers=[2])(x)[0]
    with torch.no_grad():
        features = tiny_vit.forward_features(x)  # = norm(last block output)
    torch.testing.assert_close(tiny_vit.norm(last), features, rtol=1e-5, atol=1e-5)
    assert last.dtype == torch.float32 and not last.requires_grad


def test_registers_are_laid_out_between_cls_and_patches() -> None:
    from tests.support import tiny_vit as make

    model = make(reg_tokens=3, img_size=8, patch_size=4).eval()
    capturer = make_capturer(model, tokens=[0, 1, 3, 4, 7])
    assert capturer.token_layout.kinds == ["cls", "register", "register", "patch", "patch"]
    assert capturer.token_layout.rows.tolist() == [-1, -1, -1, 0, 1]
    assert capturer.token_layout.cols.tolist() == [-1, -1, -1, 0, 1]
    assert capturer.token_indices.tolist() == [0, 1, 3, 4, 7]
    assert capturer(torch.randn(1, 1, 8, 8)).shape == (3, 1, 5, 16)


def test_capture_leaves_no_hooks_and_sets_eval(tiny_vit) -> None:
    tiny_vit.train()
    capturer = make_capturer(tiny_vit)
    capturer(torch.randn(1, 1, 16, 16))
    assert not tiny_vit.training
    assert all(not m._forward_hooks for m in tiny_vit.modules())


class ResidualBlock(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 8)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + torch.tanh(self.linear(h))


class TinyTextModel(torch.nn.Module):
    """Token ids -> embeddings -> two hand-made residual blocks (a text-like sequence model)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.blocks = torch.nn.ModuleList(ResidualBlock() for _ in range(2))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        for block in self.blocks:
            h = block(h)
        return h.mean(dim=1)


def test_hook_capture_of_a_text_model() -> None:
    torch.manual_seed(0)
    model = TinyTextModel()
    ids = torch.randint(0, 50, (3, 6))
    capturer = make_capturer(
        model, hook_modules=["embed", "blocks.0", "blocks.1"], example=ids, tokens=[1, 5]
    )
    got = capturer(ids)
    with torch.no_grad():
        h0 = model.embed.weight[ids]
        h1 = h0 + torch.tanh(h0 @ model.blocks[0].linear.weight.T + model.blocks[0].linear.bias)
        h2 = h1 + torch.tanh(h1 @ model.blocks[1].linear.weight.T + model.blocks[1].linear.bias)
    expected = torch.stack([h0, h1, h2])[:, :, [1, 5]]
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert capturer.layer_names == ["embed", "blocks.0", "blocks.1"]
    assert capturer.token_layout.kinds == ["text", "text"] and capturer.feature_dim == 8


def test_hook_modules_with_non_sequence_outputs_are_refused() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    with pytest.raises(TgoError, match=r"\(batch, tokens, features\)"):
        make_capturer(model, hook_modules=["0"], example=torch.randn(2, 4))
    with pytest.raises(TgoError, match="example input"):
        make_capturer(model, hook_modules=["0"])


def test_out_of_range_selections_name_the_valid_range(tiny_vit) -> None:
    with pytest.raises(TgoError, match="layers 0 to 2"):
        make_capturer(tiny_vit, layers=[-1])
    with pytest.raises(TgoError, match="tokens 0 to 16"):
        make_capturer(tiny_vit, tokens=[])


def test_build_model_timm_name_factory_and_errors() -> None:
    model = build_model(
        "vit_tiny_patch16_224", img_size=16, patch_size=8, embed_dim=8, depth=1, num_heads=2
    )
    assert len(model.blocks) == 1
    with pytest.raises(TgoError, match="vit_tiny_patch16_224"):
        build_model("vit_tiny_patch16_22")  # typo: the close match is named
    factory = build_model("tests.support:tiny_vit", depth=3)
    assert len(factory.blocks) == 3
    with pytest.raises(TgoError, match=r"package\.module:function"):
        build_model("tests.support:no_such_factory")


def test_model_description_is_stable_and_sees_config_changes() -> None:
    from tests.support import TINY_VIT, TINY_VIT_SPEC

    a = model_description(build_model(TINY_VIT_SPEC, **TINY_VIT), TINY_VIT_SPEC, TINY_VIT)
    b = model_description(build_model(TINY_VIT_SPEC, **TINY_VIT), TINY_VIT_SPEC, TINY_VIT)
    deeper = {**TINY_VIT, "depth": 3}
    c = model_description(build_model(TINY_VIT_SPEC, **deeper), TINY_VIT_SPEC, deeper)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a != c and a["parameter_shapes"] != c["parameter_shapes"]


def test_input_config_reads_the_model(tiny_vit) -> None:
    cfg = input_config(tiny_vit)
    assert cfg["image_size"] == 16 and cfg["in_chans"] == 1
    assert len(cfg["mean"]) == len(cfg["std"]) >= 1
