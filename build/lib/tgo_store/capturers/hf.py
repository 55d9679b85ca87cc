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

from tgo_store.capture.hf import is_hf_model
from tgo_store.capture.hf_model import backbone, layer_names
from tgo_store.capturers.base import Capturer, StackedCapture, TokenLayout, restrict_tokens, select
from tgo_store.errors import TgoError
from tgo_store.sources.base import TokenBatch
from tgo_store.store.schema import TEXT_TOKEN_KIND


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
        from tgo_store.capture.losses import language_gradients

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
