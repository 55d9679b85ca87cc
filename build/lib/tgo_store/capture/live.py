"""Live models of a ``Recorder``, reached through a model-spec loader like any other model.

``prepare_store`` builds its model from the spec; a live model has no file, so the Recorder
registers it here under a name and passes the spec ``tgo_store.recorder:_live_<name>``. That
spelling is stored in the store's ``model.name`` attribute, so it stays as stores written
before this module have it. The registry holds weak references: a model lives as long as its
Recorder (or the training loop) keeps it, and no longer.
"""

from __future__ import annotations

import weakref
from typing import Any

from tgo_store.errors import TgoError

SCHEME = "tgo_store.recorder"  # the loader scheme of live specs; kept for stored model names
PREFIX = f"{SCHEME}:_live_"
_MODELS: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def register(model: Any, name: str) -> str:
    """Register ``model`` under ``name``; returns the model spec that builds it."""
    key = "".join(ch if ch.isalnum() else "_" for ch in name)
    _MODELS[key] = model
    return PREFIX + key


def load_live(spec: str, **_kwargs: Any) -> Any:
    """The live model of a spec made by ``register`` (a loader of ``models.LOADERS``)."""
    key = spec[len(PREFIX):] if spec.startswith(PREFIX) else None
    model = _MODELS.get(key) if key is not None else None
    if model is None:
        raise TgoError(f"model '{spec}' is a live model of a Recorder that no longer exists; "
                       "record it through a Recorder holding the model")
    return model


def live_count() -> int:
    """How many live models the registry still reaches (a test of the bound)."""
    return len(_MODELS)
