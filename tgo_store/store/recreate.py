"""The `tgo ingest` command line that re-creates a store, read from what the store records.

A store's attrs hold the model spec with its keyword arguments, the data spec (and the text
options), the storage choices and the loss; its coordinates hold the checkpoints, layers and
tokens. `tgo info` prints this line so that a reader can record the same model again (or the next
checkpoints of it) without guessing the `--model-kwargs` a model was built with.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from tgo_store.store import schema as S


def format_selection(values: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (what ``--layers`` / ``--tokens`` parse)."""
    parts: list[str] = []
    values = sorted(int(v) for v in values)
    start = prev = None
    for v in [*values, None]:
        if v is not None and prev is not None and v == prev + 1:
            prev = v
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = v
    return ",".join(parts)


def _kwarg(key: str, value: Any) -> str:
    """``key=value`` that ``parse_kwargs`` reads back to the same value (JSON, Python literals)."""
    text = value if isinstance(value, str) else json.dumps(value) if not isinstance(value, bool) else str(value)
    return f"{key}={text}"


def _data_options(attrs: Mapping[str, Any]) -> list[str]:
    text = attrs.get(S.ATTR_TEXT) or {}
    if not text:
        return []
    out = ["--seq-len", str(text["seq_len"])] if "seq_len" in text else []
    if text.get("padding_side", "none") != "none":
        out += ["--padding", str(text["padding_side"])]
    if "sequences" in text and text.get("sequences") != text.get("sequences_in_corpus"):
        out += ["--samples", str(text["sequences"])]
    return out


def _loss_options(attrs: Mapping[str, Any], gradient_dtype: str | None) -> list[str]:
    loss = attrs.get(S.ATTR_LOSS)
    if not loss or gradient_dtype is None:
        return []
    out = ["--gradients", "--loss", str(loss.get("kind"))]
    if loss.get("kind") == "masked_lm":
        out += ["--mask-rate", str(loss.get("mask_rate")), "--mask-seed", str(loss.get("mask_seed", 0))]
    if gradient_dtype != "float32":
        out += ["--gradient-dtype", gradient_dtype]
    return out


def ingest_arguments(url: str, attrs: Mapping[str, Any], *, dtype: str, checkpoint_paths: Sequence[str],
                     layers: Sequence[int], tokens: Sequence[int], gradient_dtype: str | None = None) -> list[str]:
    """The arguments of ``tgo ingest`` that record this store again (as a list, unquoted)."""
    model = attrs.get(S.ATTR_MODEL) or {}
    spec = str(model.get("name", "?"))
    args = ["tgo", "ingest", "--model", spec]
    for key, value in (model.get("kwargs") or {}).items():
        args += ["--model-kwargs", _kwarg(str(key), value)]
    own_weights = spec.startswith("hf:") and len(checkpoint_paths) == 1  # the model's own weights: no flag
    if not own_weights:
        for path in checkpoint_paths:
            args += ["--checkpoints", str(path)]
    args += ["--data", str((attrs.get(S.ATTR_DATASET) or {}).get("name", "?")), *_data_options(attrs)]
    args += ["--layers", format_selection(layers), "--tokens", format_selection(tokens)]
    if dtype != "float16":
        args += ["--dtype", dtype]
    if model.get("precision"):
        args += ["--precision", str(model["precision"])]
    if attrs.get("tgo_batch_size"):
        args += ["--batch-size", str(attrs["tgo_batch_size"])]
    if (attrs.get("tgo_layout") or {}).get("samples_per_block"):
        args += ["--samples-per-block", str(attrs["tgo_layout"]["samples_per_block"])]
    args += _loss_options(attrs, gradient_dtype)
    return [*args, "--store", url]


def ingest_command(url: str, **kwargs: Any) -> str:
    """:func:`ingest_arguments` as one shell line."""
    return shlex.join(ingest_arguments(url, **kwargs))


def store_ingest_command(url: str, attrs: Mapping[str, Any], *, storage_options: dict | None = None) -> str:
    """The line for the store at ``url`` (reads its small coordinates, never the activations)."""
    import zarr

    from tgo_store.store.location import open_zarr_store

    group = zarr.open_group(open_zarr_store(url, read_only=True, storage_options=storage_options), mode="r")
    act = group[S.ACTIVATIONS]
    n = act.shape[0]
    paths = [str(p) for p in group[S.CHECKPOINT_PATH][:n]] if S.CHECKPOINT_PATH in group else []
    gradients = str(group[S.GRADIENTS].dtype) if S.GRADIENTS in group else None
    return ingest_command(url, attrs=attrs, dtype=str(act.dtype), checkpoint_paths=paths,
                          layers=group[S.LAYER][:].tolist(), tokens=group[S.TOKEN][:].tolist(),
                          gradient_dtype=gradients)
