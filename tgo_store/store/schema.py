"""The names of SPEC section 1, in one place: every other module imports them from here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tgo_store.errors import TgoError

if TYPE_CHECKING:  # annotations only: `tgo --help` must not import xarray
    import xarray as xr

SCHEMA_VERSION = 1  # what image stores are written with
TEXT_SCHEMA_VERSION = 2  # stores that use SPEC section 5 names (text positions, gradients)
SCHEMA_VERSIONS: tuple[int, ...] = (SCHEMA_VERSION, TEXT_SCHEMA_VERSION)  # what this tgo reads

ACTIVATIONS = "activations"
GRADIENTS = "gradients"  # SPEC section 5: ∂L/∂h, same dims and chunks as ACTIVATIONS (float32 by default)
GRADIENT_ZERO_FRACTION = "gradient_zero_fraction"  # SPEC 5: (checkpoint, layer) share of zero/subnormal gradients
DIMS: tuple[str, ...] = ("checkpoint", "layer", "sample", "token", "feature")
CHECKPOINT, LAYER, SAMPLE, TOKEN, FEATURE = DIMS

# Coordinates along one dim (name -> dim).
CHECKPOINT_PATH = "checkpoint_path"
CHECKPOINT_SHA256 = "checkpoint_sha256"
LAYER_NAME = "layer_name"
LABEL = "label"
TOKEN_KIND = "token_kind"
TOKEN_ROW = "token_row"
TOKEN_COL = "token_col"
COORDS: dict[str, str] = {
    CHECKPOINT_PATH: CHECKPOINT,
    CHECKPOINT_SHA256: CHECKPOINT,
    LAYER_NAME: LAYER,
    LABEL: SAMPLE,
    TOKEN_KIND: TOKEN,
    TOKEN_ROW: TOKEN,
    TOKEN_COL: TOKEN,
}

TEXT_TOKEN_KIND = "text"

# SPEC section 5: per-position labels of text stores (coords over (sample, token)) and counts.
VOCAB = "vocab"
TOKEN_ID = "token_id"
ATTENTION_MASK = "attention_mask"
TOKEN_SPECIAL = "token_special"
POSITION_COORDS: tuple[str, ...] = (TOKEN_ID, ATTENTION_MASK, TOKEN_SPECIAL)
TOKEN_MASKED = "token_masked"  # (sample, token) bool, masked-LM stores: the model saw the mask token there
VOCAB_COUNT = "vocab_count"

# Group attributes.
ATTR_SCHEMA = "tgo_schema"
ATTR_MODEL = "model"
ATTR_DATASET = "dataset"
ATTR_CREATED_BY = "created_by"
ATTR_TOKENIZER = "tokenizer"  # name, vocab_size, sha256 of its serialised form
ATTR_TEXT = "text"  # seq_len, packing, padding_side, corpus, corpus_sha256, ...
ATTR_LOSS = "loss"  # SPEC section 5: the loss whose gradients are recorded (kind, reduction, scale)
ATTR_FINAL_NORM_LAYERS = "layers_after_final_norm"  # layer coords whose states follow the model's final norm
AFTER_FINAL_NORM = " after "  # in a layer_name: "model.norm after model.layers.29", the last state, final norm applied


def validate_activations(ds: xr.Dataset) -> xr.DataArray:
    """Return ``ds.activations`` after checking it has exactly the five SPEC dims, in order."""
    if ACTIVATIONS not in ds.data_vars:
        raise TgoError(
            f"the dataset has no '{ACTIVATIONS}' variable (found: {', '.join(map(str, ds.data_vars)) or 'none'}); "
            "point tgo at a store written by `tgo ingest` or any Zarr dataset with that variable"
        )
    act = ds[ACTIVATIONS]
    if tuple(act.dims) != DIMS:
        raise TgoError(
            f"'{ACTIVATIONS}' has dims {tuple(act.dims)}, expected {DIMS}; "
            "transpose or rename the dims before analysis"
        )
    return act


def check_schema_version(attrs: dict, where: str) -> None:
    """Refuse a store written with another schema version than this package writes."""
    version = attrs.get(ATTR_SCHEMA)
    try:
        known = version is None or int(version) in SCHEMA_VERSIONS
    except (TypeError, ValueError):  # "abc", a list: an attribute edited by hand, not a schema of any tgo
        known = False
    if not known:
        raise TgoError(
            f"{where} was written with tgo schema {repr(version)[:40]}, this tgo reads schemas {SCHEMA_VERSIONS}; "
            "use the tgo version that wrote it or re-ingest into a new store"
        )


def after_final_norm(layer_name: str) -> bool:
    """Whether a stored layer_name is a state taken after the model's final norm."""
    return AFTER_FINAL_NORM in str(layer_name)


def final_norm_attrs(layers: Any, layer_names: Any) -> dict[str, list[int]]:
    """The store attribute naming the layers that follow the final norm (none when no layer does,
    so stores of models without one are unchanged)."""
    found = [int(layer) for layer, name in zip(layers, layer_names, strict=True) if after_final_norm(name)]
    return {ATTR_FINAL_NORM_LAYERS: found} if found else {}


def final_norm_layers(ds: Any) -> list[int]:
    """The store's layers (``layer`` coords) taken after the model's final norm: its attribute, or for
    stores ingested before it was recorded, what their ``layer_name`` coords say."""
    attrs = getattr(ds, "attrs", {}) or {}
    if ATTR_FINAL_NORM_LAYERS in attrs:
        return [int(v) for v in attrs[ATTR_FINAL_NORM_LAYERS]]
    if LAYER_NAME not in getattr(ds, "coords", {}):
        return []
    return list(final_norm_attrs(ds[LAYER].values, ds[LAYER_NAME].values).get(ATTR_FINAL_NORM_LAYERS, []))
