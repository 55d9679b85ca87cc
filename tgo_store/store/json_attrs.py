"""Group attrs that every netCDF engine can write: nested values as JSON strings (SPEC 9).

netCDF attributes hold strings and numbers (and 1-D numeric arrays) only, so a dict, a list with
anything but numbers in it, a bool or None is written as its JSON text, and the attribute
``tgo_json_attrs`` names those keys so tgo reads them back as they were (a string attribute that
merely looks like JSON stays a string). Attrs written before this encoding are read unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from numbers import Number
from typing import Any

JSON_ATTRS = "tgo_json_attrs"  # space-separated keys whose values are JSON text


def _plain(value: Any) -> bool:
    """Whether netCDF stores ``value`` as it is: a string, a number, or a non-empty list of numbers."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, str | Number):
        return True
    return (isinstance(value, list | tuple) and len(value) > 0
            and all(isinstance(v, Number) and not isinstance(v, bool) for v in value))


def encode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` as JSON-safe values with every nested one as JSON text, and the list of those keys."""
    plain = json.loads(json.dumps(dict(attrs), default=str))  # numpy scalars, paths, ... as JSON has them
    plain.pop(JSON_ATTRS, None)
    encoded = {k: (v if _plain(v) else json.dumps(v, sort_keys=True)) for k, v in plain.items()}
    nested = sorted(k for k, v in plain.items() if not _plain(v))
    return {**encoded, JSON_ATTRS: " ".join(nested)}


def decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The attrs as they were before :func:`encode_attrs` (the keys it names, parsed back)."""
    nested = set(str(attrs.get(JSON_ATTRS, "")).split())
    out = {}
    for key, value in attrs.items():
        if key == JSON_ATTRS:
            continue
        out[key] = json.loads(value) if key in nested and isinstance(value, str) else value
    return out
