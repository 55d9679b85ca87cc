"""The capturer registry and ``make_capturer``: the first entry that accepts the model builds it.

Order: hooks (only when hook modules are named), timm ViT, Hugging Face transformers, then
entry points of the ``tgo.capturers`` group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tgo_store.capturers.base import Capturer, CapturerEntry
from tgo_store.capturers.hf import HFEntry
from tgo_store.capturers.hooks import HookEntry
from tgo_store.capturers.timm_vit import TimmViTEntry
from tgo_store.errors import TgoError
from tgo_store.plugins import Registry

CAPTURERS: Registry[CapturerEntry] = Registry("tgo.capturers", [HookEntry(), TimmViTEntry(), HFEntry()])


def make_capturer(model: Any, *, layers: Sequence[int] | None = None, tokens: Sequence[int] | None = None,
                  hook_modules: Sequence[str] | None = None, example: Any = None) -> Capturer:
    """The capturer for a model, from the first registry entry that accepts it."""
    entry = CAPTURERS.first(lambda e: e.can_capture(model, hook_modules))
    if entry is None:
        raise TgoError(
            f"{type(model).__name__} is not a model any capturer knows ({', '.join(CAPTURERS.names())}); "
            "name the modules to record with --hook-modules (e.g. encoder.layers.0,encoder.layers.1)"
        )
    return entry.build(model, layers=layers, tokens=tokens, hook_modules=hook_modules, example=example)
