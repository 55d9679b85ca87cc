"""A checker of the report's figures, run on the matplotlib objects before they are saved.

A reader trusts a figure at a glance only when it agrees with itself and its caption. Each
check below catches a class of defect, not one instance:

- ``legend``: every legend entry is drawn (a line with a finite point, a band, an image);
- ``undrawn``: no labelled line without a finite point, unless the panel carries a note;
- ``count``: a caption's "one column / line / colour per checkpoint / layer" matches the axes;
- ``empty``: no panel is empty, and no image has a blank row or column, without a note;
- ``integer``: axes of layers, tokens, positions, patches and steps have integer ticks only;
- ``step``: every training-step axis has the one shared scale (symlog);
- ``fit``: a power-law fit line lies on the points it was fitted to;
- ``sentence``: captions do not depend on the values (they say what is drawn); every generated
  reading does (it is computed from the numbers it describes, not a literal).

``check_report(results, options)`` draws every section the results switch on and returns the
problems; ``scripts/check_report.py --figures RESULTS`` prints them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

STEP_SCALE = "symlog"
INTEGER_LABEL = re.compile(r"^(layer|token\b(?! count)|position|patch|training step|checkpoint|step)", re.I)
STEP_LABEL = re.compile(r"training step", re.I)
COUNT_CLAIM = re.compile(r"one (line|column|row|colou?r|panel) (?:per|for each) (checkpoint|layer)", re.I)
TITLE_VALUE = {"checkpoint": re.compile(r"\bstep (-?\d+)"), "layer": re.compile(r"\blayer (-?\d+)")}


@dataclass(frozen=True)
class Problem:
    """One defect of one figure: the section key, the check that found it, what is wrong."""

    section: str
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.section}: [{self.check}] {self.message}"


# ---- what is drawn ---------------------------------------------------------------------------------

def _finite_line(line: Any) -> bool:
    x = np.asarray(line.get_xdata(), dtype=float)
    y = np.asarray(line.get_ydata(), dtype=float)
    return bool(x.size and (np.isfinite(x) & np.isfinite(y)).any())


def _drawn_collection(coll: Any) -> bool:
    if len(coll.get_paths()) == 0:
        return False
    return any(np.isfinite(p.vertices).all(axis=1).any() for p in coll.get_paths())


def _has_data(ax: Any) -> bool:
    return (any(_finite_line(ln) for ln in ax.get_lines()) or any(_drawn_collection(c) for c in ax.collections)
            or any(np.isfinite(np.asarray(im.get_array(), dtype=float)).any() for im in ax.get_images()))


def _visible_axes(fig: Any) -> list[Any]:
    """Panels of the figure: visible, with axes on; colour bars (no navigation) are not panels."""
    return [ax for ax in fig.axes if ax.get_visible() and ax.axison and ax.get_navigate()]


def _notes(ax: Any) -> str:
    return " ".join(t.get_text() for t in ax.texts)


def _neutral(color: Any) -> bool:
    """A grey or black key colour: the proxy stands for a line style, not one coloured line."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(color)
    return abs(r - g) < 0.02 and abs(g - b) < 0.02


def _legends(fig: Any) -> list[Any]:
    found = list(fig.legends)
    found += [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return found


def _artists(fig: Any) -> list[Any]:
    out: list[Any] = []
    for ax in fig.axes:
        out += [*ax.get_lines(), *ax.collections, *ax.patches, *ax.get_images()]
    return out


def _entry_drawn(handle: Any, label: str, fig: Any) -> bool:
    """Whether a legend entry stands for something on the axes with at least one finite point."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    named = [a for a in _artists(fig) if a.get_label() == label]
    if named:
        for artist in named:
            if isinstance(artist, Line2D) and _finite_line(artist):
                return True
            if isinstance(artist, Patch):
                return True
            if hasattr(artist, "get_paths") and _drawn_collection(artist):
                return True
        return False
    lines = [ln for ax in fig.axes for ln in ax.get_lines() if _finite_line(ln)]
    if isinstance(handle, Line2D):  # a proxy: a style key (grey) or a colour key
        def same(ln: Any) -> bool:
            style = handle.get_linestyle() in ("None", "") or ln.get_linestyle() == handle.get_linestyle()
            marker = handle.get_marker() in ("None", "", None) or ln.get_marker() == handle.get_marker()
            from matplotlib.colors import same_color

            color = _neutral(handle.get_color()) or same_color(ln.get_color(), handle.get_color())
            return style and marker and color
        return any(same(ln) for ln in lines)
    if isinstance(handle, Patch):  # a proxy for a band
        return any(_drawn_collection(c) for ax in fig.axes for c in ax.collections)
    return True


def check_legends(key: str, fig: Any) -> list[Problem]:
    problems = []
    for legend in _legends(fig):
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=False):
            label = text.get_text()
            if not _entry_drawn(handle, label, fig):
                problems.append(Problem(key, "legend", f"legend entry '{label}' has nothing drawn"))
    return problems


def check_undrawn_lines(key: str, fig: Any) -> list[Problem]:
    """A labelled line with no finite point says nothing; a panel note must say why it is missing."""
    problems = []
    for ax in _visible_axes(fig):
        for line in ax.get_lines():
            label = line.get_label()
            if label.startswith("_") or _finite_line(line) or _notes(ax):
                continue
            problems.append(Problem(key, "undrawn", f"panel '{ax.get_title()}': line '{label}' has no finite point "
                                                    "and the panel has no note saying why"))
    return problems


def check_empty(key: str, fig: Any) -> list[Problem]:
    problems = []
    for ax in _visible_axes(fig):
        if not _has_data(ax) and not _notes(ax):
            problems.append(Problem(key, "empty", f"panel '{ax.get_title()}' is empty and has no note"))
        for image in ax.get_images():
            values = np.asarray(image.get_array(), dtype=float)
            if values.ndim != 2 or _notes(ax):
                continue
            blank = ~np.isfinite(values)
            if blank.all(axis=0).any() or blank.all(axis=1).any():
                problems.append(Problem(key, "empty", f"panel '{ax.get_title()}': a blank row or column and no note"))
    return problems


def _ticks_in_view(axis: Any, limits: tuple[float, float]) -> np.ndarray:
    ticks = np.asarray(axis.get_majorticklocs(), dtype=float)
    lo, hi = min(limits), max(limits)
    return ticks[(ticks >= lo - 1e-9) & (ticks <= hi + 1e-9)]


def check_integer_ticks(key: str, fig: Any) -> list[Problem]:
    problems = []
    for ax in _visible_axes(fig):
        for axis, label, limits in ((ax.xaxis, ax.get_xlabel(), ax.get_xlim()),
                                    (ax.yaxis, ax.get_ylabel(), ax.get_ylim())):
            if not INTEGER_LABEL.match(label.strip()):
                continue
            ticks = _ticks_in_view(axis, limits)
            fractional = ticks[np.abs(ticks - np.round(ticks)) > 1e-9]
            if fractional.size:
                problems.append(Problem(key, "integer", f"panel '{ax.get_title()}': axis '{label}' has fractional "
                                                        f"ticks {fractional[:4].tolist()}"))
    return problems


def check_step_scale(key: str, fig: Any) -> list[Problem]:
    problems = []
    for ax in _visible_axes(fig):
        for label, scale in ((ax.get_xlabel(), ax.get_xscale()), (ax.get_ylabel(), ax.get_yscale())):
            if STEP_LABEL.search(label) and scale != STEP_SCALE:
                problems.append(Problem(key, "step", f"panel '{ax.get_title()}': step axis '{label}' is {scale}, "
                                                     f"not the shared {STEP_SCALE} scale"))
    return problems


def _shown_values(fig: Any, what: str, where: str) -> set[int]:
    """Checkpoint steps or layers named by the panel titles (where='titles') or legend entries."""
    pattern = TITLE_VALUE[what]
    if where == "titles":
        texts = [ax.get_title() for ax in _visible_axes(fig)] + ([fig._suptitle.get_text()] if fig._suptitle else [])
    else:
        texts = [t.get_text() for legend in _legends(fig) for t in legend.get_texts()]
    texts += [_notes(ax) for ax in fig.axes]  # a value a note names as missing is accounted for
    return {int(m) for text in texts for m in pattern.findall(text)}


def check_counts(key: str, fig: Any, caption: str, res: xr.Dataset) -> list[Problem]:
    """'one column per checkpoint': the panel titles name every checkpoint; 'one line per layer':
    the legend names every layer, or a panel note says why it has none (a caption that shows a subset
    must not claim one per each)."""
    problems = []
    for kind, what in COUNT_CLAIM.findall(caption):
        expected = {int(v) for v in res[what].values} if what in res.coords else set()
        where = "titles" if kind.lower() in ("column", "row", "panel") else "legend"
        shown = _shown_values(fig, what, where)
        if shown != expected:
            missing = sorted(expected - shown)
            problems.append(Problem(key, "count", f"caption says 'one {kind} per {what}' ({len(expected)}) but the "
                                                  f"{where} show {len(shown)}; missing {missing[:8]}"))
    return problems


FIT_DECADES = 0.5  # a fit line whose median distance to its points exceeds this many decades misleads


def check_fit_lines(key: str, fig: Any) -> list[Problem]:
    """A power-law fit line ("alpha = ..." in its label, not marked poor) lies on the points it was fitted to:
    the median |log10(line / point)| over its ranks stays under FIT_DECADES (the points: the marker-only series
    of its colour)."""
    from matplotlib.colors import same_color

    problems = []
    for ax in _visible_axes(fig):
        if ax.get_yscale() != "log":
            continue
        points = [ln for ln in ax.get_lines() if ln.get_linestyle() in ("None", "") and _finite_line(ln)]
        for line in ax.get_lines():
            if "alpha =" not in line.get_label() or not _finite_line(line) or "poor" in line.get_label():
                continue  # a fit marked poor (dotted, "R² < 0.9") says itself that it is no power law
            mine = [p for p in points if same_color(p.get_color(), line.get_color())]
            if not mine:
                continue
            px, py = (np.asarray(v, dtype=float) for v in (mine[0].get_xdata(), mine[0].get_ydata()))
            lx, ly = (np.asarray(v, dtype=float) for v in (line.get_xdata(), line.get_ydata()))
            at = np.interp(lx, px, py, left=np.nan, right=np.nan)
            ok = np.isfinite(at) & (at > 0) & (ly > 0)
            if ok.any() and np.median(np.abs(np.log10(ly[ok] / at[ok]))) > FIT_DECADES:
                problems.append(Problem(key, "fit", f"panel '{ax.get_title()}': fit line '{line.get_label()}' lies "
                                                    f"more than {FIT_DECADES} decades off its points"))
    return problems


def check_figure(key: str, fig: Any, caption: str, res: xr.Dataset) -> list[Problem]:
    """Every figure check on one drawn figure."""
    return [*check_legends(key, fig), *check_undrawn_lines(key, fig), *check_empty(key, fig),
            *check_integer_ticks(key, fig), *check_step_scale(key, fig), *check_counts(key, fig, caption, res),
            *check_fit_lines(key, fig)]


# ---- generated sentences ---------------------------------------------------------------------------

def perturbed(res: xr.Dataset) -> Iterator[xr.Dataset]:
    """The same coords and shapes, other values: one float variable at a time negated and reversed along
    every dim but the checkpoint, then moved above its own range (2|x| + 1: every ratio above 1). A sentence
    that reads the values changes for some of them; one that only says what is drawn (counts, names,
    definitions) changes for none."""
    for name, var in res.data_vars.items():
        if not np.issubdtype(var.dtype, np.floating) or not np.isfinite(var.values).any():
            continue
        flip = {d: slice(None, None, -1) for d in var.dims if d != "checkpoint"}
        values = np.asarray(var.isel(flip).values)
        for changed in (-values, 2 * np.abs(values) + 1):
            other = res.copy()
            other[name] = var.copy(data=changed)
            yield other


def check_sentences(key: str, caption: Any, reading: Any, res: xr.Dataset) -> list[Problem]:
    """caption(res) must not follow the values (a claim about them is a reading); reading(res) must."""
    problems = []
    written = caption(res) if callable(caption) else None
    said = reading(res) if reading is not None else None
    caption_moved = reading_moved = False
    for other in perturbed(res):
        caption_moved |= written is not None and caption(other) != written
        reading_moved |= said is not None and reading(other) != said
    if caption_moved:
        problems.append(Problem(key, "sentence", "the caption changes with the values: a claim about them belongs "
                                                 "in the reading, computed from the numbers"))
    if said is not None and not reading_moved:
        problems.append(Problem(key, "sentence", f"the reading does not change with the values it describes: "
                                                 f"'{said[:80]}...'"))
    return problems


def check_report(results: xr.Dataset, options: dict | None = None) -> list[Problem]:
    """Draw every section the results switch on, check each figure and sentence, close the figures."""
    import matplotlib.pyplot as plt

    from tgo_analysis.report import _open, draw_sections

    results = _open(results)  # as write_report reads them: opened by plain xarray, nested attrs are JSON text
    options = dict(options or {})
    options["compare"] = {label: _open(other) for label, other in (options.get("compare") or {}).items()}
    problems: list[Problem] = []
    for section, fig in draw_sections(results, options or {}):
        if fig is None:  # the section's metrics are absent: the page lists it as not shown
            continue
        try:
            problems += check_figure(section.key, fig, section.caption_for(results), results)
            reading = None if section.reading is None else (lambda r, s=section: s.read(r, options or {}))
            problems += check_sentences(section.key, section.caption, reading, results)
        finally:
            plt.close(fig)
    return problems


def summary(problems: Iterable[Problem]) -> str:
    lines = [str(p) for p in problems]
    return "\n".join(lines) if lines else "no problems"
