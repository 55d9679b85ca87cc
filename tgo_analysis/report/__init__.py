"""The report: matplotlib figures of a results dataset in one self-contained HTML page."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from tgo_analysis.report import figures as F
from tgo_analysis.report import page as P
from tgo_store.errors import TgoError


@dataclass(frozen=True)
class Section:
    key: str  # also the PNG file name beside index.html
    heading: str
    caption: str
    draw: Callable[[xr.Dataset, dict], Any]  # (results, options) -> Figure | None


SECTIONS = (
    Section("training", "Training", "Held-out accuracy and train loss at each saved checkpoint.",
            lambda r, o: F.training_curve(o.get("training"))),
    Section("alpha", "Alpha across layers",
            "Power-law exponent of each token's covariance spectrum per layer, one line per checkpoint "
            "(larger alpha = faster eigenvalue decay = fewer dominant directions); the last panel "
            "averages the tokens of each alpha-trajectory cluster (Joseph et al., Fig. 1A).",
            lambda r, o: F.alpha_trajectories(r)),
    Section("clusters", "Alpha clusters on the patch grid",
            "Tokens grouped by k-means of their alpha trajectory across layers (Fig. 1C); "
            "grey = no cluster (a NaN alpha somewhere in the trajectory).",
            lambda r, o: F.cluster_grid(r)),
    Section("correlation", "Inter-token correlation",
            "Mean Pearson correlation between the flattened activations of two tokens, per layer "
            "(Fig. 2), one line per checkpoint.",
            lambda r, o: F.token_correlation_profile(r)),
    Section("correlation_matrices", "Token correlation matrices",
            "Token x token Pearson correlation at the last checkpoint, first, middle and last layers.",
            lambda r, o: F.correlation_matrices(r)),
    Section("training_dynamics_cls", "Spectral metrics over training: CLS token",
            "Each spectral metric of the CLS token against training step, one line per layer.",
            lambda r, o: F.metrics_over_training(r, F.CLS_VIEW)),
    Section("training_dynamics_patch", "Spectral metrics over training: patch tokens",
            "Each spectral metric averaged over the patch tokens, against training step, one line per layer.",
            lambda r, o: F.metrics_over_training(r, F.PATCH_VIEW)),
    Section("anisotropy", "Anisotropy across layers",
            "Top-1 eigenvalue share and mean pairwise cosine similarity of un-centred vectors, averaged "
            "over tokens, one line per checkpoint (Razzhigaev et al.).",
            lambda r, o: F.anisotropy_profiles(r)),
    Section("intrinsic_dimension", "Intrinsic dimension over training",
            "TwoNN estimate on all tokens concatenated, one line per layer.",
            lambda r, o: F.intrinsic_dimension(r)),
    Section("eigenspectra", "Eigenspectra with the alpha fit",
            "Covariance eigenvalues against rank on log-log axes, with the line of the stored alpha "
            "over the fit ranks.",
            lambda r, o: F.eigenspectra(r, o.get("spectrum_token"), o.get("spectrum_step"))),
)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _open(results: xr.Dataset | str | Path) -> xr.Dataset:
    if isinstance(results, xr.Dataset):
        return results
    try:
        with warnings.catch_warnings():  # results written by plain xarray may lack consolidation
            warnings.filterwarnings("ignore", "Failed to open Zarr store with consolidated")
            return xr.open_zarr(str(results), zarr_format=3).load()
    except (FileNotFoundError, ValueError, KeyError, OSError) as exc:
        raise TgoError(f"cannot open results {results} ({exc}); run `tgo analyze` first") from exc


def _check_spectrum_choice(res: xr.Dataset, token: int | None, step: int | None) -> None:
    if token is not None and token not in res["token"].values:
        raise TgoError(f"token {token} is not in the results; choose one of {res['token'].values.tolist()}")
    if step is not None and step not in res["checkpoint"].values:
        raise TgoError(
            f"step {step} is not in the results; choose one of {res['checkpoint'].values.tolist()}"
        )


def write_report(
    results: xr.Dataset | str | Path,
    out_dir: str | Path,
    *,
    title: str | None = None,
    training: dict | None = None,
    spectrum_token: int | None = None,
    spectrum_step: int | None = None,
) -> Path:
    """Write out_dir/index.html (figures inline as PNG, also saved beside it); returns its path.

    training: {"steps", "accuracy"[, "loss"]} from the training run, when known.
    spectrum_token / spectrum_step: the (token, checkpoint step) of the eigenspectrum figure
    (default: the first token, CLS for a ViT, at the last checkpoint).
    """
    res = _open(results)
    _check_spectrum_choice(res, spectrum_token, spectrum_step)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TgoError(f"cannot create the report folder {out} ({exc}); choose a writable --out") from exc
    options = {"training": training, "spectrum_token": spectrum_token, "spectrum_step": spectrum_step}
    title = title or "tgo report"
    dims = ", ".join(f"{k}={v}" for k, v in res.sizes.items())
    parts = [P.header(title, f"Results: {dims}. Definitions and parameters are in the provenance tables.")]
    missing = []
    for section in SECTIONS:
        fig = section.draw(res, options)
        if fig is None:
            missing.append(section.heading)
            (out / f"{section.key}.png").unlink(missing_ok=True)  # no stale figure from a past run
            continue
        png = _png(fig)
        (out / f"{section.key}.png").write_bytes(png)
        parts.append(P.figure(section.key, section.heading, section.caption, png))
    parts.append(P.skipped(missing))
    parts.append(P.provenance(res, training))
    parts.append(P.footer())
    index = out / "index.html"
    index.write_text("".join(parts), encoding="utf-8")
    return index


__all__ = ["SECTIONS", "write_report"]
