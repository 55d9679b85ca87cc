"""Parsers shared by the verbs: index selections and key=value model options."""

from __future__ import annotations

import ast
import json
from typing import Any

from tgo_store.errors import TgoError


def parse_selection(text: str | None) -> list[int] | None:
    """'0,3-5,8' -> [0, 3, 4, 5, 8]; None or 'all' -> None (everything)."""
    if text is None or text.strip().lower() == "all":
        return None
    chosen: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            chosen += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError as exc:
        raise TgoError(f"cannot read the selection '{text}'; use indices and ranges like 0,3-5,8") from exc
    return chosen


def _literal(text: str) -> Any:
    """A value as JSON (``false``, ``3``), else as a Python literal (``False``, ``None``, ``(16, 16)``):
    model options are keywords of Python libraries, spelled either way; ValueError if neither."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(text) from exc


def parse_kwargs(items: list[str] | None) -> dict:
    """['img_size=32', 'class_token=False'] or one JSON / Python dict -> a dict with values parsed
    (JSON, then Python literals; anything else stays a string)."""
    result: dict = {}
    for item in items or []:
        if item.strip().startswith("{"):
            try:
                parsed = _literal(item)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                raise TgoError(f"--model-kwargs '{item}' is not valid JSON; use key=value or a JSON object")
            result.update(parsed)
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise TgoError(f"--model-kwargs '{item}' has no '='; use key=value, e.g. img_size=32")
        try:
            result[key.strip()] = _literal(value)
        except ValueError:
            result[key.strip()] = value
    return result
