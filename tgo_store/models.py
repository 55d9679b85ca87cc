"""Build a model from a timm name or an importable factory, and describe it for the store."""

from __future__ import annotations

import difflib
import importlib
import json
from typing import Any

from tgo_store.errors import TgoError


def build_model(spec: str, **kwargs: Any) -> Any:
    """A timm model name (never pretrained: no hub access) or ``package.module:factory``."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise TgoError(f"cannot import model factory '{spec}' ({exc}); use package.module:function") from exc
        return factory(**kwargs)
    import timm

    if not timm.is_model(spec):
        close = difflib.get_close_matches(spec, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise TgoError(f"unknown timm model '{spec}'{hint}; see timm.list_models() or pass package.module:factory")
    try:
        return timm.create_model(spec, pretrained=False, **kwargs)
    except TypeError as exc:
        raise TgoError(f"model options {kwargs} do not fit '{spec}' ({exc}); check --model-kwargs") from exc


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
    json.dumps(description)
    return description


def _shape_digest(model: Any) -> str:
    import hashlib

    text = ";".join(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def input_config(model: Any) -> dict:
    """Image size, channels and normalisation the model expects."""
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
