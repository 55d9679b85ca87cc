"""The registry of report sections: each figure module (and any plug-in) registers its own.

The page (``report.write_report``) names no metric: it draws, in order, every registered section
of each group whose variables the results hold. A section is a heading, a caption (what is drawn),
a draw function, and optionally a reading (the sentence under the figure, computed from the numbers).
Built-in sections come from the report's figure modules; a plug-in registers more from a module named
by the entry-point group ``tgo.report_sections`` (loaded once, like ``tgo.statistics``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import xarray as xr

BUILT_IN = ("figures", "language", "tangent", "similarity", "encoder_decoder")  # report modules that register sections
ENTRY_POINTS = "tgo.report_sections"


@dataclass(frozen=True)
class Section:
    key: str  # also the PNG file name beside index.html
    heading: str
    caption: str | Callable[[xr.Dataset], str]  # what is drawn: text, or written from the coords (counts, kinds)
    draw: Callable[[xr.Dataset, dict], Any]  # (results, options) -> Figure | None
    reading: Callable[..., str | None] | None = None  # the sentence under the figure, from the numbers: (results)
    group: str = "core"  # sections of one group are switched on together
    needs: tuple[str, ...] | None = None  # the group is shown when the results hold any of these (None: always)
    reads_options: bool = False  # the reading takes (results, report options): it reads the compared results too
    applies: Callable[[xr.Dataset, dict], bool] | None = None  # drawn only when true (e.g. another model is compared)

    def caption_for(self, res: xr.Dataset) -> str:
        return self.caption(res) if callable(self.caption) else self.caption

    def read(self, res: xr.Dataset, options: dict) -> str | None:
        """The reading of these results (and of the report's options, for a section that compares)."""
        if self.reading is None:
            return None
        return self.reading(res, options) if self.reads_options else self.reading(res)

    def applies_to(self, res: xr.Dataset, options: dict) -> bool:
        return self.applies is None or self.applies(res, options)

    def switched_on(self, res: xr.Dataset) -> bool:
        return self.needs is None or any(name in res for name in self.needs)


_REGISTRY: dict[str, Section] = {}
_loaded = False


def register(*sections: Section) -> None:
    """Add sections in page order (a key registered again replaces its section in place)."""
    for section in sections:
        _REGISTRY[section.key] = section


def registered() -> list[Section]:
    """Every section, in page order: the built-in modules' first, then the plug-ins'."""
    global _loaded
    if not _loaded:
        _loaded = True
        for name in BUILT_IN:
            importlib.import_module(f"tgo_analysis.report.{name}")
        from importlib.metadata import entry_points

        for entry in entry_points(group=ENTRY_POINTS):
            entry.load()
    return list(_REGISTRY.values())


def of_group(group: str) -> tuple[Section, ...]:
    return tuple(s for s in registered() if s.group == group)


def split(res: xr.Dataset) -> tuple[list[Section], list[Section]]:
    """(sections to draw, sections of groups these results do not switch on)."""
    shown: list[Section] = []
    hidden: list[Section] = []
    for section in registered():
        (shown if section.switched_on(res) else hidden).append(section)
    return shown, hidden
