"""Capture: what is recorded is exactly the model's own residual stream, every token."""

from __future__ import annotations

import pytest
import torch

from tests.support import tiny_vit
from tgo_store.capturers import make_capturer
from tgo_store.errors import TgoError


def manual_stream(model, x) -> list[torch.Tensor]:
    """The embedding output and each block's output, computed by hand from timm's modules."""
    with torch.no_grad():
        h = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
        outs = [h]
        for block in model.blocks:
            h = block(h)
            outs.append(h)
    return outs


@pytest.mark.parametrize("reg_tokens", [0, 2])
def test_timm_capture_equals_the_residual_stream(reg_tokens: int) -> None:
    torch.manual_seed(0)
    model = tiny_vit(reg_tokens=reg_tokens).eval()
    x = torch.randn(3, 1, 16, 16)
    capturer = make_capturer(model)
    got = capturer(x)
    ref = manual_stream(model, x)
    assert got.shape == (3, 3, 1 + reg_tokens + 16, 16)
    for layer, expected in enumerate(ref):
        torch.testing.assert_close(got[layer], expected, rtol=1e-6, atol=1e-6)
    layout = capturer.token_layout
    assert layout.kinds[:1 + reg_tokens] == ["cls"] + ["register"] * reg_tokens
    assert (layout.rows[:1 + reg_tokens] == -1).all()
    assert layout.rows[-1] == 3 and layout.cols[-1] == 3
    assert capturer.layer_names == ["norm_pre", "blocks.0", "blocks.1"]


def test_layer_and_token_subsets_and_out_of_range() -> None:
    model = tiny_vit().eval()
    x = torch.randn(2, 1, 16, 16)
    full = make_capturer(model)(x)
    sub = make_capturer(model, layers=[0, 2], tokens=[0, 5])(x)
    torch.testing.assert_close(sub, full[[0, 2]][:, :, [0, 5]])
    with pytest.raises(TgoError, match="layers 0 to 2"):
        make_capturer(model, layers=[3])
    with pytest.raises(TgoError, match="tokens 0 to 16"):
        make_capturer(model, tokens=[17])


def test_hook_capture_of_any_module() -> None:
    layer = torch.nn.TransformerEncoderLayer(d_model=12, nhead=2, dim_feedforward=16, batch_first=True)
    model = torch.nn.Sequential(torch.nn.Linear(4, 12), torch.nn.TransformerEncoder(layer, num_layers=2)).eval()
    x = torch.randn(5, 7, 4)
    capturer = make_capturer(model, hook_modules=["0", "1.layers.0", "1.layers.1"], example=x)
    got = capturer(x)
    with torch.no_grad():
        h0 = model[0](x)
        h1 = model[1].layers[0](h0)
        h2 = model[1].layers[1](h1)
    for i, ref in enumerate((h0, h1, h2)):
        torch.testing.assert_close(got[i], ref, rtol=1e-5, atol=1e-5)
    assert capturer.token_layout.kinds == ["text"] * 7
    with pytest.raises(TgoError, match="no module named"):
        make_capturer(model, hook_modules=["nope"], example=x)


def test_non_vit_without_hooks_is_refused_with_the_fix() -> None:
    with pytest.raises(TgoError, match="--hook-modules"):
        make_capturer(torch.nn.Linear(3, 3))
