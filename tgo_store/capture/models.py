"""Build a model from its spec and describe it (and its inputs) for the store.

Specs: a timm name (random init, never pretrained), ``package.module:factory``, or a
``scheme:...`` handled by a loader of ``LOADERS`` (``hf:PATH`` for transformers models). A live
``Recorder`` hands its model over as it is; its spec (``LIVE_PREFIX``) is the model's name in
the store, and building a model from it is refused.
"""

from __future__ import annotations

import difflib
import importlib
import json
from collections.abc import Callable
from typing import Any

from tgo_store.errors import TgoError


def _load_hf(spec: str, **kwargs: Any) -> Any:
    from tgo_store.capture.hf import load_hf_model

    return load_hf_model(spec, **kwargs)


LIVE_SCHEME = "tgo_store.recorder"  # the stored model name of a Recorder's live model: tgo_store.recorder:_live_NAME
LIVE_PREFIX = f"{LIVE_SCHEME}:_live_"


def _refuse_live(spec: str, **_kwargs: Any) -> Any:
    raise TgoError(f"model '{spec}' is the live model of a Recorder, recorded from a training loop, not a file; "
                   "record it through a Recorder holding the model, or give a model spec and --checkpoints")


# model spec scheme -> loader
LOADERS: dict[str, Callable[..., Any]] = {"hf": _load_hf, LIVE_SCHEME: _refuse_live}
# what a model constructor raises for options it rejects (a wrong name, type or value)
REJECTED_OPTIONS = (TypeError, ValueError, AssertionError, KeyError, ZeroDivisionError, RuntimeError)


def build_model(spec: str, **kwargs: Any) -> Any:
    """A model from its spec: a ``LOADERS`` scheme, ``package.module:factory`` or a timm name."""
    loader = LOADERS.get(spec.partition(":")[0]) if ":" in spec else None
    if loader is not None:
        return loader(spec, **kwargs)
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise TgoError(f"cannot import model factory '{spec}' ({exc}); use package.module:function") from exc
        try:
            return factory(**kwargs)
        except REJECTED_OPTIONS as exc:
            raise TgoError(f"model options {kwargs} do not fit '{spec}' ({type(exc).__name__}: {exc}); "
                           "check --model-kwargs") from exc
    import timm

    if not timm.is_model(spec):
        close = difflib.get_close_matches(spec, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise TgoError(f"unknown timm model '{spec}'{hint}; see timm.list_models() or pass package.module:factory")
    try:
        return timm.create_model(spec, pretrained=False, **kwargs)
    except REJECTED_OPTIONS as exc:
        raise TgoError(f"model options {kwargs} do not fit '{spec}' ({type(exc).__name__}: {exc}); "
                       "check --model-kwargs") from exc


def _own_hf_weights(spec: str) -> Any:
    from tgo_store.capture.hf import own_weights

    return own_weights(spec)


OWN_WEIGHTS: dict[str, Callable[[str], Any]] = {"hf": _own_hf_weights}  # scheme -> the weights it was built with


def default_checkpoints(spec: str) -> list[Any]:
    """Without --checkpoints: the weights the model spec loads (hf:PATH), as its one checkpoint."""
    own = OWN_WEIGHTS.get(spec.partition(":")[0]) if ":" in spec else None
    if own is None:
        raise TgoError("no checkpoints given; pass --checkpoints with a glob or a list of files")
    return [own(spec)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return repr(value)


def model_description(model: Any, spec: str, kwargs: dict | None = None) -> dict:
    """Name, options and shape facts of a model: refusing a changed model on resume compares these."""
    n_params = sum(int(p.numel()) for p in model.parameters())
    description = {
        "name": spec,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "kwargs": _jsonable(dict(kwargs or {})),
        "parameters": n_params,
        "parameter_shapes": _shape_digest(model),
    }
    if _is_hf(model):
        from tgo_store.capture.hf_model import describe

        description["transformers"] = describe(model)
    json.dumps(description)
    return description


def _shape_digest(model: Any) -> str:
    import hashlib

    text = ";".join(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _is_hf(model: Any) -> bool:
    from tgo_store.capture.hf import is_hf_model

    return is_hf_model(model)


def input_config(model: Any) -> dict:
    """What a data source needs from the model (``SourceOptions`` fields).

    Image models: size, channels and normalisation. Transformers models: the tokenizer, the
    maximum sequence length and the embedding's vocabulary size.
    """
    if _is_hf(model):
        from tgo_store.capture.hf import tokenizer_of
        from tgo_store.capture.hf_model import max_positions

        return {"tokenizer": tokenizer_of(model), "max_length": max_positions(model),
                "vocab_size": int(model.get_input_embeddings().num_embeddings)}
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    embed = getattr(model, "patch_embed", None)
    size = None
    if embed is not None and getattr(embed, "img_size", None) is not None:
        size = int(embed.img_size[0])
    elif cfg.get("input_size"):
        size = int(cfg["input_size"][-1])
    in_chans = int(getattr(embed.proj, "in_channels", 3)) if embed is not None and hasattr(embed, "proj") else 3
    mean = tuple(cfg.get("mean", (0.5,) * in_chans))
    std = tuple(cfg.get("std", (0.5,) * in_chans))
    return {"image_size": size or 224, "in_chans": in_chans, "mean": mean, "std": std}
