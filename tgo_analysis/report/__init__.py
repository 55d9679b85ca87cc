"""The report: matplotlib figures of a results dataset in one self-contained HTML page."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from tgo_analysis.report import figures as F
from tgo_analysis.report import language as L
from tgo_analysis.report import page as P
from tgo_analysis.report import similarity as SIM
from tgo_analysis.report import tangent as T
from tgo_analysis.report.build import begin, completeness_banner, finish, report_writer
from tgo_store.errors import TgoError
from tgo_store.store import schema as S


@dataclass(frozen=True)
class Section:
    key: str  # also the PNG file name beside index.html
    heading: str
    caption: str | Callable[[xr.Dataset], str]  # text, or written from the results (captions fit the store)
    draw: Callable[[xr.Dataset, dict], Any]  # (results, options) -> Figure | None
    reading: Callable[[xr.Dataset], str | None] | None = None  # the sentence under the figure, from the numbers

    def caption_for(self, res: xr.Dataset) -> str:
        return self.caption(res) if callable(self.caption) else self.caption


def _pooled_anisotropy_caption(res: xr.Dataset) -> str:
    if F.is_image(res):
        return ("Top-1 eigenvalue share of the covariance of every token of every image (CLS and patches) "
                "pooled as points, and their mean pairwise cosine, one line per checkpoint; the language "
                "literature's anisotropy measure (Razzhigaev et al.) applied to a ViT's tokens.")
    return ("Top-1 eigenvalue share of the covariance of every valid position pooled as points, and "
            "their mean pairwise cosine, one line per checkpoint; one column per results set "
            "(Razzhigaev et al.: decoders peak in the middle layers, encoders stay flatter). Decoders "
            "put massive activations on the first position: the columns compare with and without it "
            "when both analyses are given (`tgo report --compare`; `tgo demo --text` does). A peak "
            "that survives leaving out first and special positions is a property of the token cloud; "
            "one that vanishes is those few massive positions, not anisotropy of the text. Ringed: "
            "the last hidden state, taken after the model's final norm, which rescales every vector "
            "(Razzhigaev et al.'s layers 0..L-1 leave it out; tgo report --without-final-norm does). "
            "λ₁ / Σλ says how much variance one direction holds, not which direction or why, and a "
            "change over layers is not by itself a change in what the model represents.")


def _frequency_caption(res: xr.Dataset) -> str:
    return ("Pooled metrics over the positions of each log-spaced bucket of corpus token counts at "
            "the last checkpoint, one line per layer; last panel: Spearman rho between log count and "
            "distance to the pooled mean per layer, one line per checkpoint." + L.spearman_summary(res)
            + " Top-1 share and effective rank come from the same number of positions in every bucket (the "
            "results' frequency_equal_count), so a difference between buckets is not their size; they still "
            "mix frequency with what frequent tokens are (function words, punctuation), so the curves support "
            "'frequent and rare positions differ here', not 'frequency causes it'. Mean norm and distance are "
            "means over the bucket (or a seeded subsample) and do not follow bucket size.")


def _eigenspectra_caption(res: xr.Dataset) -> str:
    which = "the CLS token" if F.is_image(res) else "the middle position (not the first, an outlier in decoders)"
    return ("Covariance eigenvalues against rank on log-log axes for " + which + " by default (`tgo report "
            "--spectrum-token`), with the line of the stored alpha over the fit ranks and its R²; a fit "
            f"with R² below {F.MIN_FIT_R2} is dotted and marked poor: the spectrum is not a power law there.")


def _training_caption(res: xr.Dataset) -> str:
    measure = "Held-out accuracy" if F.is_image(res) else "Held-out loss (cross-entropy, nats)"
    return f"{measure} and the train loss of the last batch, at each saved checkpoint."


def _alpha_caption(res: xr.Dataset) -> str:
    text = ("Power-law exponent of each token's covariance spectrum per layer, one line per checkpoint "
            "(larger alpha = faster eigenvalue decay = fewer dominant directions); the last panel "
            "averages the tokens of each alpha-trajectory cluster (Joseph et al., Fig. 1A). Points "
            f"ringed in red have a fit R² below {F.MIN_FIT_R2}: not read as a power law.")
    if F.is_image(res):
        return text + " The CLS token has no value at layer 0, where it is the same learned vector for every image."
    return text + (" Per-position spectra use the sequences valid at each position; a position whose "
                   "spectrum cannot be fitted (too few samples, or a constant vector) has no value.")


def _pooled_spectra_caption(res: xr.Dataset) -> str:
    return ("Eigenvalues of the pooled covariance against rank on log-log axes with the line of the "
            "stored alpha_pooled and its R², first, middle and last layers; a fit with R² below "
            f"{F.MIN_FIT_R2} is dotted and marked poor (e.g. a spectrum that falls off a cliff inside the "
            "fit ranks) and is no evidence of a power law.")


SECTIONS = (
    Section("training", "Training", _training_caption, lambda r, o: F.training_curve(o.get("training"))),
    Section("alpha", "Alpha across layers", _alpha_caption, lambda r, o: F.alpha_trajectories(r)),
    Section("clusters", "Alpha clusters on the patch grid",
            "Tokens grouped by k-means of their alpha trajectory across layers (Fig. 1C); "
            "grey (none) = no cluster (a NaN alpha somewhere in the trajectory).",
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
    Section("eigenspectra", "Eigenspectra with the alpha fit", _eigenspectra_caption,
            lambda r, o: F.eigenspectra(r, o.get("spectrum_token"), o.get("spectrum_step"))),
)

# Shown only for results that have SPEC section 5 metrics (pooled positions, frequency).
LANGUAGE_SECTIONS = (
    Section("pooled_anisotropy", "Pooled anisotropy across layers", _pooled_anisotropy_caption,
            lambda r, o: L.pooled_anisotropy(r, o.get("compare"), o.get("final_norm", True))),
    Section("pooled_training", "Pooled intrinsic dimension and anisotropy over training",
            "TwoNN on a seeded subsample of pooled positions and the pooled top-1 share against "
            "training step, one line per layer (Razzhigaev et al.: intrinsic dimension rises early "
            "in training, then falls). The estimator is in the results' id_estimator attr (twonn, or "
            "microscope for LLM-Microscope's like-for-like numbers); the two differ by construction, so "
            "compare values only within one estimator.",
            lambda r, o: L.pooled_training_dynamics(r)),
    Section("frequency", "Geometry by token frequency", _frequency_caption,
            lambda r, o: L.frequency_profiles(r)),
    Section("pooled_eigenspectra", "Pooled eigenspectra", _pooled_spectra_caption,
            lambda r, o: L.pooled_eigenspectra(r, o.get("spectrum_step"))),
)

# Shown only for results that have tangent statistics (SPEC 5 gradients; text models and ViTs alike).
TANGENT_SECTIONS = (
    Section("tangent_layers", "Gradients and tangent proxies across layers",
            T.INTRO + " Here: one colour per checkpoint against layer; grey bands are the spread of the "
            "control draws (around E_T / E_N) and the 5-95 % bootstrap intervals over held-out samples.",
            lambda r, o: T.across_layers(r), T.reading_layers),
    Section("tangent_training", "Gradients and tangent proxies over training",
            "The same panels against training step, one colour per layer (the paper: enrichment > 1 "
            "appears early and persists); activation energy (dash-dot) is the confound of a rising E_T.",
            lambda r, o: T.over_training(r), T.reading_training),
    Section("tangent_frequency", "Tangent enrichment by token frequency",
            "Tangent enrichment over an equal-count subsample of the held-out positions of each "
            "log-spaced bucket of corpus token counts (masked-LM masked positions in no bucket), against "
            "the normal controls (solid) and the PCA subspace (dashed), one colour per checkpoint, a few "
            "layers (the paper: strongest for frequent tokens).",
            lambda r, o: T.by_frequency(r), T.reading_frequency),
)

# Shown only for results that have SPEC section 6 statistics (CKA, representation updates).
SIMILARITY_SECTIONS = (
    Section("cka_layers", "Layer similarity (linear CKA)", SIM.HEATMAP_CAPTION, lambda r, o: SIM.layer_heatmaps(r)),
    Section("cka_convergence", "Convergence order: CKA to the reference checkpoint", SIM.CONVERGENCE_CAPTION,
            lambda r, o: SIM.convergence(r)),
    Section("updates", "Representation updates between checkpoints", SIM.UPDATES_CAPTION,
            lambda r, o: SIM.updates_over_training(r)),
)

# (sections, the variables that switch them on; None = always shown)
SECTION_GROUPS = ((SECTIONS, None), (LANGUAGE_SECTIONS, L.LANGUAGE_VARIABLES),
                  (TANGENT_SECTIONS, T.TANGENT_VARIABLES), (SIMILARITY_SECTIONS, SIM.SIMILARITY_VARIABLES))


def _section_groups(res: xr.Dataset) -> tuple[list[Section], list[Section]]:
    """(sections to draw, sections of groups these results do not switch on)."""
    split: tuple[list[Section], list[Section]] = ([], [])
    for sections, needs in SECTION_GROUPS:
        on = needs is None or any(name in res for name in needs)
        split[0 if on else 1].extend(sections)
    return split


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
    if token is not None and token not in res["token"].values:
        raise TgoError(f"token {token} is not in the results; choose one of {res['token'].values.tolist()}")
    if step is not None and step not in res["checkpoint"].values:
        raise TgoError(
            f"step {step} is not in the results; choose one of {res['checkpoint'].values.tolist()}"
        )


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
    spectrum_token / spectrum_step: the (token, checkpoint step) of the eigenspectrum figure
    (default: the first token, CLS for a ViT, at the last checkpoint).
    compare: {label: results} drawn beside these in the pooled anisotropy figure (another model,
    or the same store analysed with --exclude-special / --exclude-first).
    final_norm: False leaves the last hidden state taken after the final norm out of that figure.
    allow_incomplete: draw results with unwritten units under a banner instead of refusing them.
    The page is drawn beside ``out_dir`` and swapped in when complete (``report.build``).
    """
    res = _open(results)
    banner = completeness_banner(results, res, allow_incomplete)
    _check_spectrum_choice(res, spectrum_token, spectrum_step)
    final = Path(out_dir)
    out = begin(final)
    options = {"training": training, "spectrum_token": spectrum_token, "spectrum_step": spectrum_step,
               "compare": {label: _open(other) for label, other in (compare or {}).items()},
               "final_norm": final_norm}
    title = title or "tgo report"
    parts = [P.header(title, P.summary(res) + " Definitions and parameters are in the provenance tables."), banner]
    missing = []
    shown, hidden = _section_groups(res)
    for section in hidden:  # a switched-off group leaves no stale figure from a past run
        (out / f"{section.key}.png").unlink(missing_ok=True)
    for section in shown:
        fig = section.draw(res, options)
        if fig is None:
            missing.append(section.heading)
            (out / f"{section.key}.png").unlink(missing_ok=True)  # no stale figure from a past run
            continue
        png = _png(fig)
        (out / f"{section.key}.png").write_bytes(png)
        reading = section.reading(res) if section.reading is not None else None
        parts.append(P.figure(section.key, section.heading, section.caption_for(res), png, reading))
    parts.append(P.skipped(missing))
    parts.append(P.provenance(res, training))
    parts.append(P.footer())
    (out / "index.html").write_text("".join(parts), encoding="utf-8")
    return finish(out, final) / "index.html"


__all__ = ["LANGUAGE_SECTIONS", "SECTIONS", "SECTION_GROUPS", "TANGENT_SECTIONS", "parse_compare",
           "write_report"]
