"""What a capturer is: a model adapter that turns a batch of inputs into per-layer activations.

A capturer plug-in (``CapturerEntry``) says whether it can capture a model and builds the
``Capturer`` for it; ``tgo_store.capturers.registry`` picks the first entry that accepts
the model. Capture runs in inference mode and eval(); the caller casts for storage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tgo_store.capture.transfer import stack_parts
from tgo_store.errors import TgoError


@dataclass(frozen=True)
class TokenLayout:
    """Per token: its kind and its patch-grid position (-1 for prefix and text tokens)."""

    kinds: list[str]
    rows: np.ndarray
    cols: np.ndarray

    def subset(self, index: np.ndarray) -> TokenLayout:
        return TokenLayout([self.kinds[i] for i in index], self.rows[index], self.cols[index])

    @classmethod
    def uniform(cls, kind: str, n_tokens: int) -> TokenLayout:
        """Every token of one kind with no grid position (text, hooked sequences)."""
        minus = np.full(n_tokens, -1, np.int64)
        return cls([kind] * n_tokens, minus, minus.copy())


@runtime_checkable
class Capturer(Protocol):
    """Per-layer activations (L, B, T, D) of one model; what ingest and the Recorder drive."""

    layer_indices: list[int]  # the store's `layer` coordinate
    layer_names: list[str]  # the store's `layer_name` coordinate
    feature_dim: int
    token_indices: np.ndarray  # the store's `token` coordinate
    token_layout: TokenLayout

    def prepare(self, inputs: Any, device: Any, dtype: Any) -> Any:
        """A source batch's ``inputs`` (numpy) -> what ``parts`` takes, on the device."""
        ...

    def parts(self, inputs: Any) -> list[list[Any]]:
        """Per captured layer, (B, t, D) tensors that concatenate along tokens to (B, T, D)."""
        ...

    def __call__(self, inputs: Any) -> Any:
        """(L, B, T, D) for prepared inputs."""
        ...

    # Optional (``tgo ingest --gradients``; checked with hasattr, SPEC section 5):
    # def capture_with_gradients(self, inputs, batch, loss) -> (parts, gradient parts)
    #     both per layer in the form of ``parts``, from ONE forward and ONE backward of the loss
    #     (``tgo_store.capture.losses.LossSpec``); ``batch`` is the source Batch (labels, sample ids).


class CapturerEntry(Protocol):
    """A registry entry: which models it captures and how to build the capturer."""

    name: str

    def can_capture(self, model: Any, hook_modules: Sequence[str] | None) -> bool: ...

    def build(self, model: Any, *, layers: Sequence[int] | None, tokens: Sequence[int] | None,
              hook_modules: Sequence[str] | None, example: Any) -> Capturer: ...


def select(selection: Sequence[int] | None, n: int, what: str) -> np.ndarray:
    """Sorted unique indices in [0, n); all of them for None; refuses an out-of-range pick."""
    if selection is None:
        return np.arange(n, dtype=np.int64)
    chosen = np.unique(np.asarray(selection, dtype=np.int64))
    if chosen.size == 0 or chosen.min() < 0 or chosen.max() >= n:
        bad = chosen[(chosen < 0) | (chosen >= n)]
        shown = ", ".join(map(str, bad[:5])) + (f" ... ({bad.size} in all)" if bad.size > 5 else "")
        raise TgoError(f"{what} selection is out of range ({what}s {shown or 'none chosen'}); "
                       f"this model has {what}s 0 to {n - 1}")
    return chosen


def images_to_device(inputs: Any, device: Any, dtype: Any) -> Any:
    """(B, C, H, W) float images (numpy or tensor) as a tensor on the device in the compute dtype."""
    import torch

    tensor = inputs if isinstance(inputs, torch.Tensor) else torch.from_numpy(np.asarray(inputs))
    return tensor.to(device, dtype or torch.float32, non_blocking=True)


def restrict_tokens(outputs: list[Any], token_indices: np.ndarray) -> list[list[Any]]:
    """Per layer, the (B, T, D) output cut to the captured tokens (one piece per layer)."""
    import torch

    if len(token_indices) == outputs[0].shape[1]:
        return [[out] for out in outputs]
    index = torch.as_tensor(token_indices, device=outputs[0].device)
    return [[out[:, index]] for out in outputs]


class StackedCapture:
    """``capturer(inputs)`` as one (L, B, T, D) tensor, from the capturer's own ``parts``."""

    def __call__(self, inputs: Any) -> Any:
        return stack_parts(self.parts(inputs))  # type: ignore[attr-defined]


class ClassifierCapture(StackedCapture):
    """Gradients of a model whose output is (batch, classes) logits: the classification loss."""

    def capture_with_gradients(self, inputs: Any, batch: Any, loss: Any) -> tuple[list[list[Any]], list[list[Any]]]:
        """(parts, ∂L/∂parts) from one forward through the head and one backward (SPEC section 5)."""
        from tgo_store.capture.losses import classification_gradients

        states, grads = classification_gradients(self.model, self.layer_names, inputs,  # type: ignore[attr-defined]
                                                 batch.labels, loss)
        return (restrict_tokens(states, self.token_indices),  # type: ignore[attr-defined]
                restrict_tokens(grads, self.token_indices))  # type: ignore[attr-defined]
