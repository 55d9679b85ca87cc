"""The names of SPEC section 1, in one place: every other module imports them from here."""

from __future__ import annotations

SCHEMA_VERSION = 1

ACTIVATIONS = "activations"
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

TOKEN_KINDS: tuple[str, ...] = ("cls", "register", "patch", "text")

# Group attributes.
ATTR_SCHEMA = "tgo_schema"
ATTR_MODEL = "model"
ATTR_DATASET = "dataset"
ATTR_CREATED_BY = "created_by"
