"""Recorded ∂L/∂h equals torch.autograd through the rest of the network, at every layer."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support import tiny_vit
from tgo_store.capture.losses import CLASSIFICATION, LossSpec, choose_loss, classification_gradients
from tgo_store.errors import TgoError

torch = pytest.importorskip("torch")


def reference_gradient(model, state: torch.Tensor, first_block: int, labels: torch.Tensor) -> torch.Tensor:
    """∂L/∂h by running blocks first_block.. and the head on h as a leaf (independent path)."""
    x = state.detach().clone().requires_grad_()
    h = x
    for block in model.blocks[first_block:]:
        h = block(h)
    logits = model.forward_head(model.norm(h))
    torch.nn.functional.cross_entropy(logits, labels, reduction="sum").backward()
    return x.grad


def test_vit_gradients_match_autograd_at_every_layer():
    torch.manual_seed(0)
    model = tiny_vit().train()  # the state must come back
    images = torch.randn(5, 1, 16, 16)
    labels = np.array([0, 3, 9, 1, 3])
    names = ["norm_pre"] + [f"blocks.{i}" for i in range(len(model.blocks))]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    states, grads = classification_gradients(model, names, images, labels, LossSpec(CLASSIFICATION))
    assert len(states) == len(grads) == 3
    assert all(p.grad is None for p in model.parameters())  # nothing accumulated into weights
    target = torch.as_tensor(labels)
    for layer, (state, grad) in enumerate(zip(states, grads, strict=True)):
        want = reference_gradient(model, state, layer, target)
        torch.testing.assert_close(grad, want, rtol=1e-5, atol=1e-6)
        assert grad.abs().sum() > 0, layer
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_images_without_labels_have_no_loss():
    with pytest.raises(TgoError, match="labels") as info:
        choose_loss(tiny_vit(), np.array([1, -1]), text=False)
    assert "\n" not in str(info.value)


def test_image_model_refuses_text_and_lm_losses():
    with pytest.raises(TgoError, match="language model"):
        choose_loss(tiny_vit(), np.array([1]), text=True)
    with pytest.raises(TgoError, match="causal_lm"):
        choose_loss(tiny_vit(), np.array([1]), text=False, requested="causal_lm")
