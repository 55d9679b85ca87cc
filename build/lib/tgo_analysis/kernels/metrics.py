"""SPEC section 3 metrics on eigenspectra, vectorised over any leading dims (pure numpy).

Conventions, all recorded in result attrs by ``metric_attrs``:
- spectra are covariance eigenvalues (centred, divided by N-1), descending, clipped at 0;
- "nonzero" means λ > λ₁ · D · eps(float64), D = number of features;
- alpha: weighted least squares of log λ_i on [-log i, 1], weights 1/i, i counted from 1,
  over ranks fit_range[0]..fit_range[1] inclusive (11..100 = reptrix's np.arange(10, 100)),
  the upper rank clipped to (nonzero count - 10); NaN when fewer than 5 ranks remain;
- alpha_r2: R² of that fit's prediction of log λ over the fit ranks (unweighted);
- spectral_entropy: H / log m with m the nonzero count (NaN when m = 1);
- every metric is NaN, with a reason code, for an all-zero spectrum (zero variance).
"""

from __future__ import annotations

import numpy as np

from tgo_analysis import names as N

DEFAULT_FIT_RANGE = (11, 100)
MIN_FIT_RANKS = 5

REASON_OK = 0
REASON_ZERO_VARIANCE = 1
REASON_FEW_RANKS = 2
REASON_SINGLE_DIRECTION = 3
REASON_FEW_SAMPLES = 4
METRIC_REASONS = {
    REASON_OK: "ok",
    REASON_ZERO_VARIANCE: "zero variance: every sample is identical for this token, the spectrum is all zeros",
    REASON_FEW_RANKS: f"fewer than {MIN_FIT_RANKS} nonzero eigenvalues inside the alpha fit range (after clipping to nonzero count - 10)",
    REASON_SINGLE_DIRECTION: "one nonzero eigenvalue: entropy normalisation log m is zero",
    REASON_FEW_SAMPLES: "fewer than 2 samples valid (attention_mask true) at this token",
}


def nonzero_mask(eigs: np.ndarray, n_features: int) -> np.ndarray:
    """λ > λ₁ · D · eps(float64), per spectrum; all False for an all-zero spectrum."""
    top = eigs[..., :1]
    return (eigs > top * n_features * np.finfo(np.float64).eps) & (top > 0)


def fit_alpha(
    eigs: np.ndarray, fit_range: tuple[int, int] = DEFAULT_FIT_RANGE, n_features: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Power-law exponent, its R², and a reason code per spectrum (eigs (..., m) descending)."""
    eigs = np.asarray(eigs, dtype=np.float64)
    lead = eigs.shape[:-1]
    flat = eigs.reshape(-1, eigs.shape[-1])
    nnz = nonzero_mask(flat, n_features or eigs.shape[-1]).sum(axis=-1)
    alpha = np.full(flat.shape[0], np.nan)
    r2 = np.full(flat.shape[0], np.nan)
    reason = np.full(flat.shape[0], REASON_OK, dtype=np.int8)
    first, last = int(fit_range[0]), int(fit_range[1])
    for row, spectrum in enumerate(flat):
        upper = min(last, int(nnz[row]) - 10, spectrum.size)
        if nnz[row] == 0:
            reason[row] = REASON_ZERO_VARIANCE
            continue
        if upper - first + 1 < MIN_FIT_RANKS:
            reason[row] = REASON_FEW_RANKS
            continue
        ranks = np.arange(first, upper + 1, dtype=np.float64)
        y = np.log(spectrum[first - 1 : upper])
        design = np.stack([-np.log(ranks), np.ones_like(ranks)], axis=1)
        w = 1.0 / ranks
        coef = np.linalg.solve(design.T @ (design * w[:, None]), (design * w[:, None]).T @ y)
        alpha[row] = coef[0]
        residual = y - design @ coef
        total = np.sum((y - y.mean()) ** 2)
        r2[row] = 1.0 - np.sum(residual**2) / total if total > 0 else np.nan
    return alpha.reshape(lead), r2.reshape(lead), reason.reshape(lead)


def spectral_metrics(
    eigs: np.ndarray, n_features: int, fit_range: tuple[int, int] = DEFAULT_FIT_RANGE
) -> dict[str, np.ndarray]:
    """Every spectral metric of SPEC section 3 plus ``reason`` (int8 codes of METRIC_REASONS)."""
    eigs = np.asarray(eigs, dtype=np.float64)
    mask = nonzero_mask(eigs, n_features)
    lam = np.where(mask, eigs, 0.0)
    m = mask.sum(axis=-1)
    total = lam.sum(axis=-1)
    zero = m == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        p = lam / total[..., None]
        plogp = np.where(mask, p * np.log(np.where(mask, p, 1.0)), 0.0)
        entropy = -plogp.sum(axis=-1)
        log_lam = np.where(mask, np.log(np.where(mask, lam, 1.0)), 0.0)
        gmean = np.exp(log_lam.sum(axis=-1) / m)
        out = {
            N.EFFECTIVE_RANK: np.exp(entropy),
            N.SPECTRAL_ENTROPY: np.where(m > 1, entropy / np.log(np.maximum(m, 1)), np.nan),
            N.PARTICIPATION_RATIO: total**2 / (lam**2).sum(axis=-1),
            N.STABLE_RANK: total / lam[..., 0],
            N.SPECTRAL_FLATNESS: gmean / (total / m),
            N.TOP1_SHARE: lam[..., 0] / total,
        }
    for key in out:
        out[key] = np.where(zero, np.nan, out[key])
    alpha, r2, reason = fit_alpha(eigs, fit_range, n_features)
    out[N.ALPHA], out[N.ALPHA_R2] = alpha, r2
    reason = np.where(zero, REASON_ZERO_VARIANCE, reason).astype(np.int8)
    out["reason"] = np.where(
        (m == 1) & (reason == REASON_OK), REASON_SINGLE_DIRECTION, reason
    ).astype(np.int8)
    out["nonzero_count"] = m
    return out


def cosine_anisotropy(unit_sum: np.ndarray, n: int) -> np.ndarray:
    """Mean pairwise cosine over i ≠ j: (‖s‖² - N) / (N(N-1)), s = Σ x_i/‖x_i‖ (Ethayarajh 2019)."""
    s = np.asarray(unit_sum, dtype=np.float64)
    return ((s * s).sum(axis=-1) - n) / (n * (n - 1))


def metric_attrs(fit_range: tuple[int, int] = DEFAULT_FIT_RANGE) -> dict[str, object]:
    """Every definition choice, for the attrs of a result (SPEC: results carry their definitions)."""
    return {
        "covariance": "C = (X - mean)^T (X - mean) / (N - 1), float64, merged pairwise (Chan, Golub & LeVeque)",
        "eigenvalues": "numpy.linalg.eigvalsh, descending, negatives clipped to 0",
        "nonzero_threshold": "lambda > lambda_1 * D * eps(float64)",
        "alpha_fit_range": list(fit_range),
        "alpha_fit": "weighted least squares of log lambda_i on [-log i, 1], weights 1/i, i from 1, "
        "ranks inclusive, upper rank clipped to nonzero count - 10, NaN below 5 ranks",
        "alpha_r2": "unweighted R^2 of the fitted log lambda over the fit ranks",
        "effective_rank": "exp(H), H = -sum p log p over nonzero p (natural log, no epsilon)",
        "spectral_entropy": "H / log m, m = nonzero count",
        "participation_ratio": "(sum lambda)^2 / sum lambda^2",
        "stable_rank": "sum lambda / lambda_1",
        "spectral_flatness": "geometric mean / arithmetic mean of nonzero lambda",
        "top1_share": "lambda_1 / sum lambda",
        "cosine_anisotropy": "(|sum_i x_i/|x_i||^2 - N) / (N (N - 1)) on un-centred sample vectors",
        "reason_codes": {str(k): v for k, v in METRIC_REASONS.items()},
    }


TRUNCATED_METRICS = (N.ALPHA, N.STABLE_RANK, N.TOP1_SHARE)  # what a truncated spectrum supports (SPEC 3)


def truncated_spectrum_metrics(
    eigs: np.ndarray, trace: float, n_features: int, fit_range: tuple[int, int] = DEFAULT_FIT_RANGE
) -> dict[str, np.ndarray]:
    """The metrics a truncated (top-k) spectrum supports, with Σλ from the exact trace (SPEC 3)."""
    eigs = np.asarray(eigs, dtype=np.float64)
    alpha, r2, reason = fit_alpha(eigs, fit_range, n_features)
    top = eigs[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        stable = np.where(top > 0, trace / top, np.nan)
        share = np.where(top > 0, top / trace, np.nan)
    reason = np.where(top > 0, reason, REASON_ZERO_VARIANCE).astype(np.int8)
    return {
        N.ALPHA: alpha,
        N.ALPHA_R2: r2,
        N.STABLE_RANK: stable,
        N.TOP1_SHARE: share,
        "reason": reason,
    }
