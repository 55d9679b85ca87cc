"""Every number a document quotes, checked against the results file it comes from (SPEC 8,
"Numbers in documents").

A document marks its measured passages: ``<!-- numbers: benchmarks/results/a.json [b.json ...] -->``
up to ``<!-- /numbers -->`` (or the next marker). Each number in the prose and tables there (not in
code, links or dates) must equal, at the precision it is quoted with, some number in those files
(any nesting depth; a value in other units of the same file counts: x100 for per cent, x1000 or
/1000 for ms/s and MB/GB, /1e6 for bytes as MB). Numbers outside every marked
passage are allowed only where a document says why (``ALLOWED``): option values, definitions, the
page's own limits.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARK = re.compile(r"<!--\s*numbers:\s*(.*?)-->|<!--\s*/numbers\s*-->", re.S)
CODE_BLOCK = re.compile(r"```.*?```", re.S)
STRIP = [re.compile(p, re.M) for p in (
    r"`[^`\n]*`",                      # inline code: option values, names, commands
    r"<!--[^>]*-->",                   # comments (the markers themselves)
    r"\]\([^)]*\)",                    # link targets
    r"!\[[^\]]*\]",                    # image alt text
    r"\b\d{4}-\d{2}-\d{2}\b",          # dates
    r"^#+ .*$",                        # headings
)]
NUMBER = re.compile(r"(?<![\w./^-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:e([-+]?\d+))?(?![\w/])")
SCALES = (1.0, 100.0, 1000.0, 1e-3, 1e-6)


@dataclass(frozen=True)
class Quoted:
    document: str
    text: str
    value: float
    decimals: int
    sources: tuple[str, ...]
    line: int


def _leaves(value: object) -> Iterator[float]:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        if math.isfinite(value):
            yield float(value)
    elif isinstance(value, dict):  # keys too: {"144": 0.836} is the accuracy at step 144
        for k, v in value.items():
            yield from _leaves(k)
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    elif isinstance(value, str):  # numbers written inside descriptive strings ("500 steps, 7 checkpoints")
        for m in re.finditer(r"\d+(?:\.\d+)?", value):
            yield float(m.group(0))


def source_numbers(path: str) -> list[float]:
    return list(_leaves(json.loads((ROOT / path).read_text())))


def _prose(text: str) -> str:
    """Text with code, comments, link targets, dates and headings blanked (line numbers kept)."""
    for pattern in (CODE_BLOCK, *STRIP):
        text = pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    return text


def quoted_numbers(document: str) -> list[Quoted]:
    """Every number of ``document``'s prose, with the sources of the passage it is in (() outside)."""
    raw = (ROOT / document).read_text()
    spans: list[tuple[int, int, tuple[str, ...]]] = []
    marks = list(MARK.finditer(raw))
    for i, mark in enumerate(marks):
        if mark.group(1) is None:
            continue
        end = marks[i + 1].start() if i + 1 < len(marks) else len(raw)
        spans.append((mark.end(), end, tuple(mark.group(1).split())))
    prose = _prose(raw)
    out = []
    for m in NUMBER.finditer(prose):
        sources = next((s for a, b, s in spans if a <= m.start() < b), ())
        digits = m.group(2) or ""
        decimals = max(len(digits) - 1, 0) - int(m.group(3) or 0)  # 6.7e-16: the last digit is 1e-17
        out.append(Quoted(document, m.group(0), float(m.group(0).replace(",", "")), decimals,
                          sources, prose.count("\n", 0, m.start()) + 1))
    return out


def matches(quoted: Quoted, numbers: list[float]) -> bool:
    """Some source number, in some unit of :data:`SCALES`, rounds to the quoted one."""
    tolerance = 0.5 * 10 ** -quoted.decimals + 1e-9
    return any(abs(n * s - quoted.value) <= tolerance for n in numbers for s in SCALES)
