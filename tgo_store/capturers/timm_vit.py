"""timm Vision Transformers: ``forward_intermediates`` for every block, a hook for layer 0.

Every block output comes with its prefix tokens (class token first, then registers) when the
model has any: timm returns ``(patches, prefix)`` pairs then, and bare patch tokens for a
model without prefix tokens (``class_token=False``, e.g. SigLIP-style or GAP ViTs). The module
that feeds the first block (``norm_pre`` or ``pos_drop``) gives the embedding output, layer 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tgo_store.capture.forward_hooks import collect_outputs
from tgo_store.capturers.base import (
    Capturer,
    ClassifierCapture,
    TokenLayout,
    images_to_device,
    select,
)

REQUIRED = ("forward_intermediates", "blocks", "patch_embed", "num_prefix_tokens")


class TimmViTCapturer(ClassifierCapture):
    """Embedding output and every block output of a timm ViT, all tokens in sequence order."""

    def __init__(self, model: Any, layers: Sequence[int] | None, tokens: Sequence[int] | None):
        self.model = model.eval()
        n_blocks = len(model.blocks)
        self.layer_indices = [int(i) for i in select(layers, n_blocks + 1, "layer")]
        self.feature_dim = int(model.embed_dim)
        n_prefix = int(model.num_prefix_tokens)
        grid_h, grid_w = (int(g) for g in model.patch_embed.grid_size)
        n_tokens = n_prefix + grid_h * grid_w
        self.token_indices = select(tokens, n_tokens, "token")
        n_cls = 1 if getattr(model, "cls_token", None) is not None else 0
        kinds = ["cls"] * n_cls + ["register"] * (n_prefix - n_cls) + ["patch"] * (grid_h * grid_w)
        rows = np.concatenate([np.full(n_prefix, -1), np.repeat(np.arange(grid_h), grid_w)]).astype(np.int64)
        cols = np.concatenate([np.full(n_prefix, -1), np.tile(np.arange(grid_w), grid_h)]).astype(np.int64)
        self.token_layout = TokenLayout(kinds, rows, cols).subset(self.token_indices)
        self._embed_module = "norm_pre" if hasattr(model, "norm_pre") else "pos_drop"
        self.layer_names = [self._embed_module if i == 0 else f"blocks.{i - 1}" for i in self.layer_indices]
        self._all_tokens = len(self.token_indices) == n_tokens

    def prepare(self, inputs: Any, device: Any, dtype: Any) -> Any:
        return images_to_device(inputs, device, dtype)

    def parts(self, inputs: Any) -> list[list[Any]]:
        """Per captured layer, (B, t, D) pieces that concatenate along tokens to the layer's
        (B, T, D) output: prefix and patch tokens come separately from ``forward_intermediates``,
        and copying each straight into its place saves a concatenation and a stack."""
        import torch

        block_indices = [i - 1 for i in self.layer_indices if i > 0]
        with torch.inference_mode():
            (embed,), outputs = collect_outputs(self.model, [self._embed_module], lambda: self.model.forward_intermediates(
                inputs, indices=block_indices or [0], return_prefix_tokens=True, norm=False,
                output_fmt="NLC", intermediates_only=True, stop_early=True))
        per_layer = {i + 1: _in_sequence_order(out) for i, out in zip(block_indices or [0], outputs, strict=True)}
        per_layer[0] = [embed]
        parts = [per_layer[i] for i in self.layer_indices]
        if self._all_tokens:
            return parts
        index = torch.as_tensor(self.token_indices, device=inputs.device)
        return [[torch.cat(p, dim=1)[:, index]] for p in parts]


def _in_sequence_order(output: Any) -> list[Any]:
    """One block's tokens in sequence order: ``[prefix, patches]`` from timm's ``(patches, prefix)``
    pair, or ``[patches]`` for a model without prefix tokens (timm returns the tensor alone)."""
    if isinstance(output, tuple):
        patches, prefix = output
        return [patches] if prefix is None else [prefix, patches]
    return [output]


class TimmViTEntry:
    """Registry entry: any model with timm's ViT interface."""

    name = "timm-vit"

    def can_capture(self, model: Any, hook_modules: Sequence[str] | None) -> bool:
        return not hook_modules and all(hasattr(model, a) for a in REQUIRED)

    def build(self, model: Any, *, layers: Sequence[int] | None, tokens: Sequence[int] | None,
              hook_modules: Sequence[str] | None, example: Any) -> Capturer:
        return TimmViTCapturer(model, layers, tokens)
