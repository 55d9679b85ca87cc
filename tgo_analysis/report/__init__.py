"""The report: matplotlib figures of a results dataset in one self-contained HTML page."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from tgo_analysis.report import page as P
from tgo_analysis.report import sections as registry
from tgo_analysis.report.build import begin, completeness_banner, finish, report_writer
from tgo_analysis.report.sections import Section
from tgo_store.errors import TgoError, nearest_step
from tgo_store.store import schema as S


def _section_groups(res: xr.Dataset) -> tuple[list[Section], list[Section]]:
    """(sections to draw, sections of groups these results do not switch on): from the registry."""
    return registry.split(res)


def draw_sections(res: xr.Dataset, options: dict) -> Iterator[tuple[Section, Any]]:
    """(section, its Figure or None when its metrics are absent), for every section these results switch
    on, in page order; the figures are not saved (``checks.check_report`` inspects them)."""
    for section in _section_groups(res)[0]:
        if section.applies_to(res, options):
            yield section, section.draw(res, options)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _open(results: xr.Dataset | str | Path) -> xr.Dataset:
    from tgo_analysis.results.store import open_results
    from tgo_store.store.json_attrs import decode_attrs

    if isinstance(results, xr.Dataset):  # opened by plain xarray, perhaps: its nested attrs are JSON text
        decoded = results.copy(deep=False)
        decoded.attrs = decode_attrs(results.attrs)
        return decoded
    try:
        with warnings.catch_warnings():  # results written by plain xarray may lack consolidation
            warnings.filterwarnings("ignore", "Failed to open Zarr store with consolidated")
            ds = open_results(str(results))
    except (FileNotFoundError, ValueError, KeyError, OSError) as exc:
        raise TgoError(f"cannot open results {results} ({exc}); run `tgo analyze` first") from exc
    if S.ACTIVATIONS in ds.data_vars or not ds.data_vars:
        raise TgoError(f"{results} is not a results store ({'an activation store' if ds.data_vars else 'no variables'}); "
                       "a results store holds the metrics `tgo analyze` writes: run `tgo analyze STORE --out "
                       "metrics.zarr`, then `tgo report metrics.zarr --out DIR`")
    return ds.load()


def _check_spectrum_choice(res: xr.Dataset, token: int | None, step: int | None) -> None:
    if token is not None and token not in res[S.TOKEN].values:
        raise TgoError(f"token {token} is not in the results; choose one of {res['token'].values.tolist()}")
    if step is not None and step != LAST and step not in res[S.CHECKPOINT].values:
        steps = res[S.CHECKPOINT].values.tolist()
        raise TgoError(f"--spectrum-step {step} is not a training step of these results{nearest_step(step, steps)}; "
                       f"choose one of {steps}, or -1 for the last")


LAST = -1  # a checkpoint named by its training step; -1 is the last (steps are never negative)


def parse_compare(items: list[str] | None) -> dict[str, str]:
    """``["decoder=runs/smol.zarr", ...]`` (``tgo report --compare``) -> {label: results URL}."""
    pairs = {}
    for item in items or []:
        label, sep, url = item.partition("=")
        if not sep or not label.strip() or not url.strip():
            raise TgoError(f"cannot read --compare '{item}'; give LABEL=RESULTS, e.g. decoder=smollm2_metrics.zarr")
        pairs[label.strip()] = url.strip()
    return pairs


@report_writer
def write_report(
    results: xr.Dataset | str | Path,
    out_dir: str | Path,
    *,
    title: str | None = None,
    training: dict | None = None,
    spectrum_token: int | None = None,
    spectrum_step: int | None = None,
    compare: Mapping[str, xr.Dataset | str | Path] | None = None,
    final_norm: bool = True,
    allow_incomplete: bool = False,
) -> Path:
    """Write out_dir/index.html (figures inline as PNG, also saved beside it); returns its path.

    training: {"steps", "accuracy"[, "loss"]} from the training run, when known.
    spectrum_token / spectrum_step: the (token, training step) of the eigenspectrum figure
    (default: the first token, CLS for a ViT, at the last checkpoint; step -1 is the last too).
    compare: {label: results} drawn beside these in the pooled anisotropy figure (another model,
    or the same store analysed with --exclude-special / --exclude-first).
    final_norm: False leaves the last hidden state taken after the final norm out of that figure.
    allow_incomplete: draw results with unwritten units under a banner instead of refusing them.
    The page is drawn beside ``out_dir`` and swapped in when complete (``report.build``).
    """
    res = _open(results)
    banner = completeness_banner(results, res, allow_incomplete)
    _check_spectrum_choice(res, spectrum_token, spectrum_step)
    spectrum_step = None if spectrum_step == LAST else spectrum_step
    final = Path(out_dir)
    out = begin(final)
    options = {"training": training, "spectrum_token": spectrum_token, "spectrum_step": spectrum_step,
               "compare": {label: _open(other) for label, other in (compare or {}).items()},
               "final_norm": final_norm}
    title = title or "tgo report"
    parts = [P.header(title, P.summary(res) + " Definitions and parameters are in the provenance tables."), banner]
    missing = []
    shown, hidden = _section_groups(res)
    for section in [*hidden, *(s for s in shown if not s.applies_to(res, options))]:  # no stale figure from a past run
        (out / f"{section.key}.png").unlink(missing_ok=True)
    for section, fig in draw_sections(res, options):
        if fig is None:
            missing.append(section.heading)
            (out / f"{section.key}.png").unlink(missing_ok=True)  # no stale figure from a past run
            continue
        png = _png(fig)
        (out / f"{section.key}.png").write_bytes(png)
        reading = section.read(res, options)
        parts.append(P.figure(section.key, section.heading, section.caption_for(res), png, reading))
    parts.append(P.skipped(missing))
    parts.append(P.provenance(res, training))
    parts.append(P.footer())
    (out / "index.html").write_text("".join(parts), encoding="utf-8")
    return finish(out, final) / "index.html"


def __getattr__(name: str) -> Any:
    """SECTIONS, LANGUAGE_SECTIONS, TANGENT_SECTIONS, SIMILARITY_SECTIONS: a registry group as a tuple."""
    if name == "SECTIONS" or (name.endswith("_SECTIONS") and name.isupper()):  # <GROUP>_SECTIONS: that group
        return registry.of_group(name.removesuffix("SECTIONS").removesuffix("_").lower() or "core")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LANGUAGE_SECTIONS",
    "SECTIONS",
    "SIMILARITY_SECTIONS",
    "TANGENT_SECTIONS",
    "Section",
    "draw_sections",
    "parse_compare",
    "write_report",
]
