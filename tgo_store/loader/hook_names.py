"""The TransformerLens hook name of a store's layer, derived from its layer names (SPEC 9).

tgo layer i is transformers' ``hidden_states[i]``: layer 0 the embedding output (after position
embedding), layer i >= 1 the output of block i-1. In TransformerLens that is:

- layer 0: ``blocks.0.hook_resid_pre``, the residual stream entering block 0 (``hook_embed`` +
  ``hook_pos_embed`` where the model adds position embeddings; ``hook_embed`` alone would leave
  them out), and for BERT the same tensor as ``hook_full_embed``;
- layer i of a decoder (pre-norm blocks): ``blocks.{i-1}.hook_resid_post``;
- layer i of BERT (post-norm blocks, TransformerLens's ``HookedEncoder``):
  ``blocks.{i-1}.hook_normalized_resid_post``.

The layer names must say so: each recorded layer i >= 1 is named ``<blocks>.<i-1>`` with one
``<blocks>`` container, and layer 0 is not a block. A decoder's last hidden state is taken after
the final norm (its name reads ``"model.norm after model.layers.N"``); no TransformerLens hook
holds that tensor (``blocks.N.hook_resid_post`` is before the norm, ``ln_final.hook_normalized``
before its weights), so it is refused, as are stores whose names do not number blocks this way
(``--hook-modules`` recordings) and encoders other than BERT. Never a guess.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import xarray as xr

from tgo_store.errors import TgoError
from tgo_store.store import schema as S
from tgo_store.store.schema import AFTER_FINAL_NORM, after_final_norm

_BLOCK = re.compile(r"^(?P<container>.+)\.(?P<index>\d+)$")
ENCODERS = {"bert": "hook_normalized_resid_post"}  # model_type -> TransformerLens's block output hook


def _model_facts(ds: xr.Dataset) -> dict[str, Any]:
    model = ds.attrs.get(S.ATTR_MODEL) or {}
    if isinstance(model, str):
        try:
            model = json.loads(model)
        except ValueError:
            return {}
    facts = model.get("transformers") if isinstance(model, dict) else None
    return facts if isinstance(facts, dict) else {}


def _block_output_hook(ds: xr.Dataset, where: str) -> str:
    facts = _model_facts(ds)
    if facts.get("is_decoder", True):
        return "hook_resid_post"
    kind = str(facts.get("model_type", "unknown"))
    if kind in ENCODERS:
        return ENCODERS[kind]
    raise TgoError(f"{where} holds a {kind} encoder; TransformerLens names the block outputs of decoders and of "
                   f"BERT only ({', '.join(sorted(ENCODERS))}), so no hook name can be derived for it")


def transformer_lens_hook(ds: xr.Dataset, layer: int, where: str = "the store") -> str:
    """The TransformerLens hook name of ``layer`` (a value of the ``layer`` coord); a one-line
    ``TgoError`` saying why when the store's layer names do not determine it (see module doc)."""
    if S.LAYER_NAME not in ds.coords:
        raise TgoError(f"{where} has no '{S.LAYER_NAME}' coord, so the TransformerLens hook of layer {layer} "
                       "cannot be derived; export a store written by `tgo ingest`")
    layers = (ds[S.LAYER].values if S.LAYER in ds.coords else np.arange(ds.sizes[S.LAYER])).astype(np.int64)
    names = [str(n) for n in ds[S.LAYER_NAME].values]
    name = names[int(np.flatnonzero(layers == int(layer))[0])]
    if after_final_norm(name):
        block = name.split(AFTER_FINAL_NORM, 1)[1]
        raise TgoError(f"layer {layer} of {where} ('{name}') is taken after the model's final norm (transformers' "
                       f"last hidden state); no TransformerLens hook holds it (the hook_resid_post of {block} is "
                       "before the norm); export another layer")
    containers = set()
    for value, text in zip(layers.tolist(), names, strict=True):
        if value == 0:
            continue
        match = _BLOCK.match(text.split(AFTER_FINAL_NORM, 1)[-1])
        if match is None or int(match["index"]) != value - 1:
            raise TgoError(f"layer {value} of {where} is named '{text}', not the output of block {value - 1} of the "
                           "model's blocks (as tgo layer i = hidden_states[i] is), so no TransformerLens hook name "
                           "can be derived (a --hook-modules store?)")
        containers.add(match["container"])
    if len(containers) > 1:
        raise TgoError(f"the layers of {where} name blocks of several containers ({', '.join(sorted(containers))}); "
                       "no TransformerLens hook name can be derived")
    if int(layer) == 0:
        if _BLOCK.match(name) is not None and name.rsplit(".", 1)[0] in containers:
            raise TgoError(f"layer 0 of {where} is named '{name}', a block, not the embedding output")
        return "blocks.0.hook_resid_pre"
    return f"blocks.{int(layer) - 1}.{_block_output_hook(ds, where)}"
