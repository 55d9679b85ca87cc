"""Hugging Face ``transformers`` encoders and decoders through ``output_hidden_states``.

Layer 0 is the embedding output and layer i the output of block i, exactly the model's own
``hidden_states``. In transformers the last element of ``hidden_states`` of LLaMA / GPT-2
style decoders already has the final norm applied (it is ``last_hidden_state``); BERT has no
final norm. ``final_norm_applied`` says which, and goes into the store's model description.
Only the base model runs (no LM head: its logits are not recorded). Padded positions
(attention mask false) are stored as zeros.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from tgo_store.capturers.base import Capturer, StackedCapture, TokenLayout, restrict_tokens, select
from tgo_store.errors import TgoError
from tgo_store.hf import is_hf_model
from tgo_store.schema import TEXT_TOKEN_KIND
from tgo_store.sources.base import TokenBatch

FINAL_NORMS = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "norm_f")


def backbone(model: Any) -> Any:
    """The base model (no task head) that returns hidden states."""
    return getattr(model, "base_model", model)


def block_list(model: Any) -> tuple[str, Any]:
    """Name and ModuleList of the transformer blocks (``model.layers``, ``transformer.h``, ``encoder.layer``)."""
    import torch

    n = int(model.config.num_hidden_layers)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return name, module
    raise TgoError(f"cannot find the {n} transformer blocks of {type(model).__name__}; "
                   "record it with --hook-modules instead")


def final_norm_name(model: Any) -> str | None:
    """The module name of the norm after the last block, if the model has one."""
    base = backbone(model)
    prefix = next((n for n, m in model.named_modules() if m is base), "")
    for child, _ in base.named_children():
        if child in FINAL_NORMS:
            return f"{prefix}.{child}" if prefix else child
    return None


def layer_names(model: Any) -> list[str]:
    """layer_name of hidden state 0..L: the embeddings module, then each block."""
    blocks, _ = block_list(model)
    embed = model.get_input_embeddings()
    names = {m: n for n, m in model.named_modules()}
    embed_name = names[embed]
    parent = embed_name.rsplit(".", 1)[0] if "." in embed_name else embed_name
    first = parent if parent.endswith("embeddings") else embed_name
    return [first] + [f"{blocks}.{i}" for i in range(int(model.config.num_hidden_layers))]


def describe(model: Any) -> dict:
    """Facts about an HF model for the store's model description (refused if they change)."""
    import hashlib

    config = model.config.to_json_string(use_diff=False)
    return {"transformers_config_sha256": hashlib.sha256(config.encode()).hexdigest(),
            "model_type": str(model.config.model_type),
            "is_decoder": is_causal(model),
            "final_norm_applied": final_norm_name(model) is not None,
            "hidden_states": int(model.config.num_hidden_layers) + 1}


def is_causal(model: Any) -> bool:
    """Whether position 0 ignores later tokens (a decoder), tested on two 3-token inputs."""
    import torch

    vocab = int(model.get_input_embeddings().num_embeddings)
    ids = torch.tensor([[1, 2, 3], [1, 2, 4]]) % vocab
    device, training = next(model.parameters()).device, model.training
    model.eval()  # dropout would hide the answer
    try:
        with torch.inference_mode():
            last = backbone(model)(input_ids=ids.to(device), output_hidden_states=True).hidden_states[-1]
    finally:
        model.train(training)
    change = (last[0, :2] - last[1, :2]).norm() / last[0, :2].norm().clamp_min(1e-30)
    return bool(change < 1e-5)  # not exactly 0: rows of one batch may take different kernel paths


def max_positions(model: Any) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(model.config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class HFCapturer(StackedCapture):
    """Every (or selected) hidden state of a transformers model for token batches."""

    def __init__(self, model: Any, layers: Sequence[int] | None, tokens: Sequence[int] | None, example: Any):
        if not isinstance(example, TokenBatch):
            raise TgoError("a transformers model records text: pass --data text:pydoc or text:URL "
                           "(an example TokenBatch), not images")
        self.model = model.eval()
        self._backbone = backbone(model)
        n_states = int(model.config.num_hidden_layers) + 1
        self.layer_indices = [int(i) for i in select(layers, n_states, "layer")]
        names = layer_names(model)
        self.layer_names = [names[i] for i in self.layer_indices]
        self.feature_dim = int(model.config.hidden_size)
        n_tokens = int(example.ids.shape[1])
        self.token_indices = select(tokens, n_tokens, "token")
        self.token_layout = TokenLayout.uniform(TEXT_TOKEN_KIND, n_tokens).subset(self.token_indices)
        accepted = inspect.signature(self._backbone.forward).parameters
        self._extra = {"use_cache": False} if "use_cache" in accepted else {}

    def prepare(self, inputs: TokenBatch, device: Any, dtype: Any) -> TokenBatch:
        """Token ids and masks as int64 / bool tensors on the device (the compute dtype is the model's)."""
        import torch

        def tensor(x: Any, kind: Any) -> Any:
            t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
            return t.to(device, kind, non_blocking=True)

        return TokenBatch(tensor(inputs.ids, torch.int64), tensor(inputs.attention_mask, torch.bool),
                          tensor(inputs.special, torch.bool))

    def hidden_states(self, inputs: TokenBatch) -> tuple[Any, ...]:
        """The model's own ``hidden_states`` tuple (L + 1 tensors of (B, S, D))."""
        import torch

        with torch.inference_mode():
            out = self._backbone(input_ids=inputs.ids, attention_mask=inputs.attention_mask.long(),
                                 output_hidden_states=True, return_dict=True, **self._extra)
        return out.hidden_states

    def parts(self, inputs: TokenBatch) -> list[list[Any]]:
        import torch

        states = self.hidden_states(inputs)
        keep = inputs.attention_mask[..., None]
        outputs = [torch.where(keep, states[i], torch.zeros((), dtype=states[i].dtype, device=states[i].device))
                   for i in self.layer_indices]
        return restrict_tokens(outputs, self.token_indices)

    def capture_with_gradients(self, inputs: TokenBatch, batch: Any, loss: Any) -> tuple[list[list[Any]], list[list[Any]]]:
        """(parts, ∂L/∂parts) of the LM loss from one forward with the head and one backward (SPEC section 5)."""
        from tgo_store.gradients import language_gradients

        states, grads = language_gradients(self.model, self.layer_indices, inputs, batch.sample_ids, loss)
        return restrict_tokens(states, self.token_indices), restrict_tokens(grads, self.token_indices)


class HFEntry:
    """Registry entry: any ``transformers.PreTrainedModel`` with a block list."""

    name = "transformers"

    def can_capture(self, model: Any, hook_modules: Sequence[str] | None) -> bool:
        return not hook_modules and is_hf_model(model)

    def build(self, model: Any, *, layers: Sequence[int] | None, tokens: Sequence[int] | None,
              hook_modules: Sequence[str] | None, example: Any) -> Capturer:
        return HFCapturer(model, layers, tokens, example)
