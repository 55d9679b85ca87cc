"""Causal and masked LM gradients of tiny transformers models equal autograd at every hidden state."""

from __future__ import annotations

import numpy as np
import pytest

from tgo_store.capture.losses import (
    CAUSAL_LM,
    MASKED_LM,
    LossSpec,
    choose_loss,
    language_gradients,
    masked_inputs,
)
from tgo_store.errors import TgoError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


class Tokenizer:
    mask_token_id = 3


def llama():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    return transformers.LlamaForCausalLM(config).eval()


def bert():
    from tgo_store.capture.hf import attach_tokenizer

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, max_position_embeddings=32)
    model = transformers.BertForMaskedLM(config).eval()
    attach_tokenizer(model, Tokenizer())
    return model


def batch():
    from tgo_store.sources.base import TokenBatch

    ids = torch.randint(4, 40, (3, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 7:] = False  # right padding
    special = torch.zeros(3, 10, dtype=torch.bool)
    special[:, 0] = True
    return TokenBatch(ids, mask, special)


def reference(model, modules, layer, inputs, value_of):
    """∂L/∂h_layer by replacing that module's output with a leaf in a second forward, then .backward()."""
    leaf = {}

    def hook(_m, _i, out):
        tensor = out[0] if isinstance(out, tuple) else out
        leaf["x"] = tensor.detach().clone().requires_grad_()
        return (leaf["x"], *out[1:]) if isinstance(out, tuple) else leaf["x"]

    handle = modules[layer].register_forward_hook(hook)
    try:
        value_of(model(input_ids=inputs[0], attention_mask=inputs[1].long(), use_cache=False).logits.float()).backward()
    finally:
        handle.remove()
    model.zero_grad(set_to_none=True)
    return leaf["x"].grad


def test_causal_lm_gradients_match_autograd_at_every_layer():
    model, tokens = llama(), batch()
    assert choose_loss(model, np.array([-1]), text=True) == LossSpec(CAUSAL_LM)
    states, grads = language_gradients(model, [0, 1, 2], tokens, np.arange(3), LossSpec(CAUSAL_LM))
    assert all(p.grad is None for p in model.parameters())
    ids, valid = tokens.ids, tokens.attention_mask
    at = valid[:, :-1] & valid[:, 1:]

    def value_of(logits):
        return torch.nn.functional.cross_entropy(logits[:, :-1][at], ids[:, 1:][at], reduction="sum")

    # hidden_states: embeddings, block 0 output, final norm(block 1 output)
    modules = [model.model.embed_tokens, model.model.layers[0], model.model.norm]
    for layer in range(3):
        want = reference(model, modules, layer, (ids, valid), value_of) * valid[..., None]
        torch.testing.assert_close(grads[layer], want, rtol=1e-5, atol=1e-6)
        assert grads[layer].abs().sum() > 0
        assert (grads[layer][~valid] == 0).all() and (states[layer][~valid] == 0).all()


def test_masked_lm_gradients_match_autograd_and_masks_are_seeded():
    model, tokens = bert(), batch()
    loss = choose_loss(model, np.array([-1]), text=True)
    assert loss.kind == MASKED_LM and loss.mask_rate == 0.15 and loss.attr()["seed"] == 0
    loss = LossSpec(MASKED_LM, mask_rate=0.4, seed=7)
    masked, where = masked_inputs(tokens.ids, tokens.attention_mask, tokens.special, np.arange(3), loss, 3)
    again, _ = masked_inputs(tokens.ids[1:], tokens.attention_mask[1:], tokens.special[1:], np.arange(1, 3), loss, 3)
    assert torch.equal(masked[1:], again)  # a sample's mask depends on its id, not on its batch
    assert where.any() and not (where & ~tokens.attention_mask).any() and not (where & tokens.special).any()
    _, grads = language_gradients(model, [0, 1, 2], tokens, np.arange(3), loss)

    def value_of(logits):
        return torch.nn.functional.cross_entropy(logits[where], tokens.ids[where], reduction="sum")

    modules = [model.bert.embeddings, model.bert.encoder.layer[0], model.bert.encoder.layer[1]]
    valid = tokens.attention_mask
    for layer in range(3):
        want = reference(model, modules, layer, (masked, valid), value_of) * valid[..., None]
        torch.testing.assert_close(grads[layer], want, rtol=1e-5, atol=1e-6)
        assert grads[layer].abs().sum() > 0


def test_encoder_asked_for_a_causal_loss_and_headless_models_are_refused():
    with pytest.raises(TgoError, match="masked_lm"):
        choose_loss(bert(), np.array([-1]), text=True, requested=CAUSAL_LM)
    with pytest.raises(TgoError, match="causal_lm"):
        choose_loss(llama(), np.array([-1]), text=True, requested=MASKED_LM)
    headless = transformers.LlamaModel(llama().config)
    with pytest.raises(TgoError, match="head") as info:
        choose_loss(headless, np.array([-1]), text=True)
    assert "\n" not in str(info.value)
