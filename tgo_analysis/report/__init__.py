"""The report: matplotlib figures of a results dataset in one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import xarray as xr

from tgo_analysis.report import figures as F
from tgo_store.errors import TgoError

SECTIONS = (
    ("training", "Training", "Held-out accuracy of each checkpoint.", lambda r, t: F.training_curve(t)),
    ("alpha", "Alpha across layers",
     "Power-law exponent of each token's covariance spectrum per layer, one line per checkpoint "
     "(larger alpha = faster decay = lower-dimensional representation).", lambda r, t: F.alpha_trajectories(r)),
    ("clusters", "Alpha clusters on the patch grid", "Tokens grouped by their alpha trajectory at the last checkpoint.",
     lambda r, t: F.cluster_grid(r)),
    ("correlation", "Inter-token correlation", "Mean Pearson correlation between token activations per layer.",
     lambda r, t: F.token_correlation_profile(r)),
    ("correlation_matrices", "Token correlation matrices", "", lambda r, t: F.correlation_matrices(r)),
    ("training_dynamics", "Spectral metrics over training", "Each metric against training step, one line per layer.",
     lambda r, t: F.metrics_over_training(r)),
    ("anisotropy", "Anisotropy across layers", "Top-1 eigenvalue share and mean pairwise cosine similarity.",
     lambda r, t: F.anisotropy_profiles(r)),
    ("intrinsic_dimension", "Intrinsic dimension over training", "", lambda r, t: F.intrinsic_dimension(r)),
    ("eigenspectra", "Eigenspectra with the alpha fit", "CLS token (token 0), last checkpoint.",
     lambda r, t: F.eigenspectra(r)),
)

STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
img{max-width:100%;height:auto;border:1px solid #eee}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
.note{color:#777}code{font-size:12px}"""


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _provenance_rows(res: xr.Dataset) -> list[tuple[str, str]]:
    rows = []
    inputs = json.loads(res.attrs.get("input_attrs", "{}") or "{}")
    for key in ("model", "dataset", "created_by"):
        if key in inputs:
            rows.append((f"store {key}", json.dumps(inputs[key], indent=1)))
    if "checkpoint_path" in res.coords:
        ckpts = [f"step {int(s)}: {p} (sha256 {str(h)[:12]})" for s, p, h in
                 zip(res.checkpoint.values, res.checkpoint_path.values,
                     res.coords.get("checkpoint_sha256", res.checkpoint_path).values, strict=True)]
        rows.append(("checkpoints", "\n".join(ckpts)))
    for key, value in res.attrs.items():
        if key != "input_attrs":
            rows.append((key, value if isinstance(value, str) else json.dumps(value, indent=1, default=str)))
    return rows


def write_report(results: xr.Dataset | str, out_dir: str | Path, *, title: str | None = None,
                 training: dict | None = None) -> Path:
    """Write out_dir/index.html (figures inline as PNG, also saved beside it); returns its path."""
    if isinstance(results, str):
        try:
            results = xr.open_zarr(results, zarr_format=3).load()
        except (FileNotFoundError, ValueError, KeyError) as exc:
            raise TgoError(f"cannot open results {results} ({exc}); run `tgo analyze` first") from exc
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TgoError(f"cannot create the report folder {out} ({exc}); choose a writable --out") from exc
    title = title or "tgo report"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    dims = ", ".join(f"{k}={v}" for k, v in results.sizes.items())
    parts.append(f"<p class='note'>Results: {dims}. Metric definitions are in the provenance table.</p>")
    skipped = []
    for key, heading, caption, make in SECTIONS:
        fig = make(results, training)
        if fig is None:
            skipped.append(heading)
            continue
        png = _png(fig)
        (out / f"{key}.png").write_bytes(png)
        parts.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(caption)}</p>"
                     f"<img alt='{html.escape(heading)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    if skipped:
        parts.append(f"<p class='note'>Not shown (metrics not in these results): {html.escape(', '.join(skipped))}.</p>")
    parts.append("<h2>Provenance</h2><table><tr><th>item</th><th>value</th></tr>")
    for key, value in _provenance_rows(results):
        parts.append(f"<tr><td>{html.escape(str(key))}</td><td><pre>{html.escape(str(value))}</pre></td></tr>")
    parts.append("</table></body></html>")
    page = out / "index.html"
    page.write_text("".join(parts), encoding="utf-8")
    return page
