"""A report folder is whole or absent: built beside itself, renamed into place when complete.

``tgo report --out DIR`` draws into ``DIR.tgo-partial`` and only then swaps it with ``DIR``
(``DIR`` -> ``DIR.tgo-old``, the partial -> ``DIR``, the old one removed), so a kill at any
point leaves either the previous page with its own figures or the new one with its own, never
an old ``index.html`` beside new figures. A swap cut short between its two renames is undone
by the next report (the previous page is put back, then rebuilt). A folder that holds files a
report does not write is refused rather than replaced.

It also decides whether results may be drawn: their schema must be one this tgo reads, and
results with unwritten (checkpoint, layer) units (``results.completeness``) are refused in one
line naming them, or drawn under a banner that says so when the caller allows it.
"""

from __future__ import annotations

import functools
import html
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import xarray as xr

from tgo_analysis.report.stamp import STAMP
from tgo_analysis.results.completeness import check_results_schema, describe_missing, missing_units
from tgo_store.errors import TgoError
from tgo_store.no_space import naming_full_disk

PARTIAL_SUFFIX = ".tgo-partial"
OLD_SUFFIX = ".tgo-old"
F = TypeVar("F", bound=Callable[..., Any])


def _is_report_file(name: str) -> bool:
    return name in ("index.html", STAMP) or name.endswith(".png")


def begin(final: Path) -> Path:
    """A fresh, empty partial folder beside ``final``, after undoing a swap a kill cut short."""
    old, partial = final.with_name(final.name + OLD_SUFFIX), final.with_name(final.name + PARTIAL_SUFFIX)
    if old.exists() and not final.exists():
        old.rename(final)  # killed between the swap's renames: the previous page is whole again
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        if not final.is_dir():
            raise TgoError(f"--out {final} is a file; a report writes a folder: choose another --out")
        foreign = sorted(p.name for p in final.iterdir() if not _is_report_file(p.name))
        if foreign:
            raise TgoError(f"--out {final} holds files a report does not write ({', '.join(foreign[:3])}); "
                           "a report replaces its folder whole: choose another --out or move them")
    try:
        shutil.rmtree(partial, ignore_errors=True)  # a report a kill cut short: drawn again
        partial.mkdir(parents=True)
    except OSError as exc:
        raise TgoError(f"cannot create the report folder {partial} ({exc}); choose a writable --out") from exc
    return partial


def finish(partial: Path, final: Path) -> Path:
    """Swap the complete partial folder into ``final``; returns ``final``."""
    old = final.with_name(final.name + OLD_SUFFIX)
    if final.exists():
        os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def report_writer(fn: F) -> F:
    """Wrap ``fn(results, out_dir, ...)``: a full disk while it writes names ``out_dir``."""

    @functools.wraps(fn)
    def wrapper(results: Any, out_dir: Any, *args: Any, **kwargs: Any) -> Any:
        with naming_full_disk(os.fspath(out_dir)):
            return fn(results, out_dir, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def completeness_banner(results: Any, res: xr.Dataset, allow_incomplete: bool) -> str:
    """'' for complete results; the page's banner for incomplete ones when allowed; else TgoError."""
    where = str(results) if not isinstance(results, xr.Dataset) else "the results"
    check_results_schema(res.attrs, where)
    if isinstance(results, xr.Dataset) or "checkpoint" not in res.sizes or "layer" not in res.sizes:
        return ""
    missing = missing_units(str(results), res.sizes["checkpoint"], res.sizes["layer"])
    if not missing:
        return ""
    said = describe_missing(res, missing)
    if not allow_incomplete:
        raise TgoError(f"{where} is incomplete: {said}; re-run the same `tgo analyze` to finish it, or pass "
                       "--allow-incomplete (allow_incomplete=True) to draw what is written under a banner")
    return ("<div class='incomplete' style='background:#fff3cd;border:2px solid #d39e00;padding:.6em 1em;"
            f"margin:1em 0'><strong>Incomplete results.</strong> {html.escape(said)}. Their values are missing "
            "(NaN) from the figures below; re-run the same <code>tgo analyze</code> to finish them, then this "
            "report.</div>")
