"""Parsers shared by the verbs: index selections and key=value model options."""

from __future__ import annotations

import json

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


def parse_kwargs(items: list[str] | None) -> dict:
    """['img_size=32', 'depth=6'] or one JSON object -> a dict with numbers parsed."""
    result: dict = {}
    for item in items or []:
        if item.strip().startswith("{"):
            try:
                result.update(json.loads(item))
            except json.JSONDecodeError as exc:
                raise TgoError(f"--model-kwargs '{item}' is not valid JSON; use key=value or a JSON object") from exc
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise TgoError(f"--model-kwargs '{item}' has no '='; use key=value, e.g. img_size=32")
        try:
            result[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            result[key.strip()] = value
    return result
