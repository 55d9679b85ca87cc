"""The one forward-hook collector: the outputs of named modules during one call of the model.

Activations (``capturers.hooks``, the embedding output of ``capturers.timm_vit``) are collected
under ``inference_mode``; gradients (``capture.losses``) need the outputs inside the autograd
graph, so ``differentiable=True`` hands back, for an output that does not require grad (frozen
weights below it), a detached copy that does, and the model continues from that copy: the
backward can then start at every collected output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def collect_outputs(model: Any, module_names: Sequence[str], run: Callable[[], Any], *,
                    differentiable: bool = False) -> tuple[list[Any], Any]:
    """Per named module, its output during ``run()`` (the first element of a tuple output), and run's value."""
    captured: dict[str, Any] = {}

    def hook(name: str) -> Callable:
        def record(_module: Any, _inputs: Any, out: Any) -> Any:
            tensor = out[0] if isinstance(out, tuple) else out
            if differentiable and not tensor.requires_grad and not isinstance(out, tuple):
                tensor = tensor.detach().requires_grad_()
                captured[name] = tensor
                return tensor
            captured[name] = tensor
            return None

        return record

    handles = [model.get_submodule(name).register_forward_hook(hook(name)) for name in module_names]
    try:
        result = run()
    finally:
        for handle in handles:
            handle.remove()
    return [captured[name] for name in module_names], result
