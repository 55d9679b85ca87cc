"""Any torch module: forward hooks on named modules whose outputs are (batch, tokens, features)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tgo_store.capture.forward_hooks import collect_outputs
from tgo_store.capturers.base import (
    Capturer,
    ClassifierCapture,
    TokenLayout,
    images_to_device,
    restrict_tokens,
    select,
)
from tgo_store.errors import TgoError


class HookCapturer(ClassifierCapture):
    """Outputs (B, T, D) of named modules of any torch module, captured with forward hooks."""

    def __init__(self, model: Any, modules: Sequence[str], tokens: Sequence[int] | None, example: Any,
                 token_kind: str = "text"):
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
        self.token_indices = select(tokens, n_tokens, "token")
        self.token_layout = TokenLayout.uniform(token_kind, n_tokens).subset(self.token_indices)

    def _run(self, inputs: Any) -> Any:
        import torch

        with torch.inference_mode():
            outputs, _ = collect_outputs(self.model, self.layer_names, lambda: self.model(inputs))
        shapes = {name: tuple(out.shape) for name, out in zip(self.layer_names, outputs, strict=True)}
        if any(len(s) != 3 for s in shapes.values()) or len(set(shapes.values())) != 1:
            raise TgoError(
                f"hooked modules must all output (batch, tokens, features) tensors, got {shapes}; "
                "choose modules with sequence outputs of one shape"
            )
        return outputs

    def prepare(self, inputs: Any, device: Any, dtype: Any) -> Any:
        return images_to_device(inputs, device, dtype)

    def parts(self, inputs: Any) -> list[list[Any]]:
        """Per hooked module, its (B, T, D) output restricted to the captured tokens."""
        return restrict_tokens(self._run(inputs), self.token_indices)



class HookEntry:
    """Registry entry: chosen whenever hook modules are named, for any model."""

    name = "hooks"

    def can_capture(self, model: Any, hook_modules: Sequence[str] | None) -> bool:
        return bool(hook_modules)

    def build(self, model: Any, *, layers: Sequence[int] | None, tokens: Sequence[int] | None,
              hook_modules: Sequence[str] | None, example: Any) -> Capturer:
        if example is None:
            raise TgoError("hook capture needs an example input to learn the token count; pass example=")
        if not hasattr(example, "device"):  # a source's numpy batch: run it where the model is
            param = next(model.parameters(), None)
            example = images_to_device(example, param.device if param is not None else "cpu",
                                       param.dtype if param is not None else None)
        capturer = HookCapturer(model, list(hook_modules or ()), tokens, example)
        if layers is not None:
            raise TgoError("--layers selects timm blocks; with --hook-modules list only the modules you want")
        return capturer
