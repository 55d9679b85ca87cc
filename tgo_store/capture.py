"""Model + batch -> activations (layer, batch, token, feature).

timm's Vision Transformer family is captured with ``forward_intermediates`` (every block
output with its prefix tokens) plus a hook on the module that feeds the first block (the
embedding output, layer 0). Any other ``torch.nn.Module`` is captured through forward hooks
on named modules. Capture runs in inference mode and eval(); the caller casts for storage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tgo_store.errors import TgoError


@dataclass(frozen=True)
class TokenLayout:
    """Per token: its kind and its patch-grid position (-1 for prefix and text tokens)."""

    kinds: list[str]
    rows: np.ndarray
    cols: np.ndarray

    def subset(self, index: np.ndarray) -> TokenLayout:
        return TokenLayout([self.kinds[i] for i in index], self.rows[index], self.cols[index])


def _select(selection: Sequence[int] | None, n: int, what: str) -> np.ndarray:
    if selection is None:
        return np.arange(n, dtype=np.int64)
    chosen = np.asarray(sorted(set(int(i) for i in selection)), dtype=np.int64)
    if chosen.size == 0 or chosen.min() < 0 or chosen.max() >= n:
        raise TgoError(
            f"{what} selection {list(selection)} is out of range; this model has {what}s 0 to {n - 1}"
        )
    return chosen


def _is_timm_vit(model: Any) -> bool:
    return all(
        hasattr(model, a)
        for a in ("forward_intermediates", "blocks", "patch_embed", "num_prefix_tokens")
    )


class TimmViTCapturer:
    """Embedding output and every block output of a timm ViT, all tokens in sequence order."""

    def __init__(self, model: Any, layers: Sequence[int] | None, tokens: Sequence[int] | None):
        self.model = model.eval()
        n_blocks = len(model.blocks)
        self.layer_indices = [int(i) for i in _select(layers, n_blocks + 1, "layer")]
        self.feature_dim = int(model.embed_dim)
        n_prefix = int(model.num_prefix_tokens)
        grid_h, grid_w = (int(g) for g in model.patch_embed.grid_size)
        n_tokens = n_prefix + grid_h * grid_w
        self.token_indices = _select(tokens, n_tokens, "token")
        n_cls = 1 if getattr(model, "cls_token", None) is not None else 0
        kinds = ["cls"] * n_cls + ["register"] * (n_prefix - n_cls) + ["patch"] * (grid_h * grid_w)
        rows = np.concatenate([np.full(n_prefix, -1), np.repeat(np.arange(grid_h), grid_w)]).astype(
            np.int64
        )
        cols = np.concatenate([np.full(n_prefix, -1), np.tile(np.arange(grid_w), grid_h)]).astype(
            np.int64
        )
        self.token_layout = TokenLayout(kinds, rows, cols).subset(self.token_indices)
        self._embed_module = "norm_pre" if hasattr(model, "norm_pre") else "pos_drop"
        self.layer_names = [
            self._embed_module if i == 0 else f"blocks.{i - 1}" for i in self.layer_indices
        ]
        self._all_tokens = len(self.token_indices) == n_tokens

    def parts(self, inputs: Any) -> list[list[Any]]:
        """Per captured layer, (B, t, D) pieces that concatenate along tokens to the layer's
        (B, T, D) output: prefix and patch tokens come separately from ``forward_intermediates``,
        and copying each straight into its place saves a concatenation and a stack."""
        import torch

        captured: dict[str, Any] = {}
        embed = self.model.get_submodule(self._embed_module)
        handle = embed.register_forward_hook(lambda _m, _i, out: captured.__setitem__("embed", out))
        block_indices = [i - 1 for i in self.layer_indices if i > 0]
        try:
            with torch.inference_mode():
                outputs = self.model.forward_intermediates(
                    inputs,
                    indices=block_indices or [0],
                    return_prefix_tokens=True,
                    norm=False,
                    output_fmt="NLC",
                    intermediates_only=True,
                    stop_early=True,
                )
        finally:
            handle.remove()
        per_layer = {
            i + 1: [patches] if prefix is None else [prefix, patches]
            for i, (patches, prefix) in zip(block_indices or [0], outputs, strict=True)
        }
        per_layer[0] = [captured["embed"]]
        parts = [per_layer[i] for i in self.layer_indices]
        if self._all_tokens:
            return parts
        index = torch.as_tensor(self.token_indices, device=inputs.device)
        return [[torch.cat(p, dim=1)[:, index]] for p in parts]

    def __call__(self, inputs: Any) -> Any:
        return stack_parts(self.parts(inputs))


class HookCapturer:
    """Outputs (B, T, D) of named modules of any torch module, captured with forward hooks."""

    def __init__(
        self,
        model: Any,
        modules: Sequence[str],
        tokens: Sequence[int] | None,
        example: Any,
        token_kind: str = "text",
    ):
        self.model = model.eval()
        names = dict(model.named_modules())
        unknown = [m for m in modules if m not in names]
        if unknown:
            raise TgoError(
                f"model has no module named {', '.join(unknown)}; "
                f"pick --hook-modules from: {', '.join(list(names)[1:8])} ..."
            )
        self.layer_names = list(modules)
        self.layer_indices = list(range(len(modules)))
        first = self._run(example)[0]
        n_tokens, self.feature_dim = int(first.shape[1]), int(first.shape[2])
        self.token_indices = _select(tokens, n_tokens, "token")
        minus = np.full(n_tokens, -1, np.int64)
        self.token_layout = TokenLayout([token_kind] * n_tokens, minus, minus.copy()).subset(
            self.token_indices
        )

    def _run(self, inputs: Any) -> Any:
        import torch

        captured: dict[str, Any] = {}
        handles = [
            self.model.get_submodule(name).register_forward_hook(
                lambda _m, _i, out, name=name: captured.__setitem__(
                    name, out[0] if isinstance(out, tuple) else out
                )
            )
            for name in self.layer_names
        ]
        try:
            with torch.inference_mode():
                self.model(inputs)
        finally:
            for h in handles:
                h.remove()
        shapes = {name: tuple(captured[name].shape) for name in self.layer_names}
        if any(len(s) != 3 for s in shapes.values()) or len(set(shapes.values())) != 1:
            raise TgoError(
                f"hooked modules must all output (batch, tokens, features) tensors, got {shapes}; "
                "choose modules with sequence outputs of one shape"
            )
        return [captured[name] for name in self.layer_names]

    def parts(self, inputs: Any) -> list[list[Any]]:
        """Per hooked module, its (B, T, D) output restricted to the captured tokens."""
        import torch

        outputs = self._run(inputs)
        if len(self.token_indices) == outputs[0].shape[1]:
            return [[out] for out in outputs]
        index = torch.as_tensor(self.token_indices, device=outputs[0].device)
        return [[out[:, index]] for out in outputs]

    def __call__(self, inputs: Any) -> Any:
        return stack_parts(self.parts(inputs))


def stack_parts(parts: list[list[Any]]) -> Any:
    """(L, B, T, D) from per-layer token pieces."""
    import torch

    return torch.stack([p[0] if len(p) == 1 else torch.cat(p, dim=1) for p in parts])


def make_capturer(
    model: Any,
    *,
    layers: Sequence[int] | None = None,
    tokens: Sequence[int] | None = None,
    hook_modules: Sequence[str] | None = None,
    example: Any = None,
) -> Any:
    """The capturer for a model: timm ViTs natively, anything else through hooks on named modules."""
    if hook_modules:
        if example is None:
            raise TgoError(
                "hook capture needs an example input to learn the token count; pass example="
            )
        capturer = HookCapturer(model, hook_modules, tokens, example)
        if layers is not None:
            raise TgoError(
                "--layers selects timm blocks; with --hook-modules list only the modules you want"
            )
        return capturer
    if _is_timm_vit(model):
        return TimmViTCapturer(model, layers, tokens)
    raise TgoError(
        f"{type(model).__name__} is not a timm Vision Transformer; "
        "name the modules to record with --hook-modules (e.g. encoder.layers.0,encoder.layers.1)"
    )
