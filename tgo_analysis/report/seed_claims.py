"""The encoder/decoder claims of our seed papers, read from numbers: each a verdict with the numbers behind it.

Razzhigaev et al.: a decoder's anisotropy profile across layers is bell-shaped, an encoder's flat;
intrinsic dimension rises early in training, then falls. "Revisiting anisotropy": tangent enrichment
emerges early in training and persists, strongest for frequent tokens. Each reader below takes plain
arrays (a results store's, or a pretrained model's from a benchmark file), applies a rule whose
thresholds are named here, and returns a ``Verdict``: whether the claim's pattern is there (None when
the numbers cannot say) and a sentence with the numbers. The thresholds are conventions, not tests:
TwoNN and λ₁/Σλ here carry no interval, so the sentences say the size of each effect, and the
tangent rules count only layers whose bootstrap interval excludes the null (SPEC 8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPE_MARGIN = 0.1  # λ₁/Σλ points: an interior peak this far above both ends is a bell; a range below it is flat
RISE_FALL = 0.1  # relative: ID rises then falls when its interior peak is 10 % above the first and the last
MAJORITY = 0.5  # share of layers a pattern must hold at
EARLY = 0.1  # a pattern that appears by this fraction of the training steps appeared early


@dataclass(frozen=True)
class Verdict:
    holds: bool | None  # None: the numbers cannot say (too few checkpoints, no values)
    sentence: str
    numbers: dict  # what the sentence quotes, for a findings table

    @property
    def word(self) -> str:
        return {True: "reproduces", False: "does not reproduce", None: "cannot be read"}[self.holds]


def _finite(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)[np.isfinite(np.asarray(values, dtype=np.float64))]


def profile_shape(profile: np.ndarray) -> tuple[str, float, float, int]:
    """(shape, bell contrast, range, peak layer index) of a λ₁/Σλ profile across layers.

    contrast = the highest interior value minus the higher of the two ends; a bell when it is at
    least SHAPE_MARGIN, flat when the whole range is below SHAPE_MARGIN, otherwise "other".
    """
    values = np.asarray(profile, dtype=np.float64)
    if values.size < 3 or not np.isfinite(values).all():
        return "unknown", float("nan"), float("nan"), -1
    peak = int(np.argmax(values[1:-1])) + 1
    contrast = float(values[peak] - max(values[0], values[-1]))
    spread = float(values.max() - values.min())
    shape = "bell" if contrast >= SHAPE_MARGIN else "flat" if spread < SHAPE_MARGIN else "other"
    return shape, contrast, spread, peak


def anisotropy_contrast(decoder: np.ndarray, encoder: np.ndarray, steps: np.ndarray | None = None) -> Verdict:
    """Decoder bell vs encoder flat; ``decoder`` / ``encoder`` are (checkpoint, layer) λ₁/Σλ (or one
    profile of a final model); judged at the last checkpoint, counted over all of them."""
    dec, enc = np.atleast_2d(decoder), np.atleast_2d(encoder)
    shapes = [(profile_shape(d), profile_shape(e)) for d, e in zip(dec, enc, strict=False)]
    (d_shape, d_contrast, _, d_peak), (e_shape, _, e_range, _) = shapes[-1]
    if "unknown" in (d_shape, e_shape):
        return Verdict(None, "the anisotropy profiles have missing layers, so their shapes cannot be read", {})
    both = sum(d[0] == "bell" and e[0] == "flat" for d, e in shapes)
    holds = d_shape == "bell" and e_shape == "flat"
    when = f" at step {int(steps[-1])}" if steps is not None else ""
    over = f" (at {both} of {len(shapes)} checkpoints)" if len(shapes) > 1 else ""
    sentence = (f"decoder{when}: {d_shape} (interior peak at layer index {d_peak}, {d_contrast:+.2f} of λ₁/Σλ above its "
                f"higher end); encoder: {e_shape} (range {e_range:.2f} across layers); the bell-vs-flat contrast "
                f"{'holds' if holds else 'does not hold'}{over}")
    return Verdict(holds, sentence, {"decoder_shape": d_shape, "decoder_contrast": d_contrast,
                                     "encoder_shape": e_shape, "encoder_range": e_range, "checkpoints_holding": both,
                                     "checkpoints": len(shapes)})


def rise_then_fall(series: np.ndarray, steps: np.ndarray) -> Verdict:
    """Intrinsic dimension (checkpoint, layer) rising to an interior peak, then falling, at a majority of layers."""
    ids = np.asarray(series, dtype=np.float64)
    if ids.ndim != 2 or ids.shape[0] < 3:
        return Verdict(None, "fewer than 3 checkpoints: a rise and a fall cannot both be seen", {})
    holding, peaks = 0, []
    layers = 0
    for column in ids.T:
        if not np.isfinite(column).all():
            continue
        layers += 1
        peak = int(np.argmax(column))
        peaks.append(int(steps[peak]))
        rise = column[peak] / column[0] - 1 if column[0] > 0 else np.inf
        fall = 1 - column[-1] / column[peak]
        holding += bool(0 < peak < len(column) - 1 and rise >= RISE_FALL and fall >= RISE_FALL)
    if layers == 0:
        return Verdict(None, "no layer has an intrinsic dimension at every checkpoint", {})
    holds = holding > MAJORITY * layers
    mean = np.nanmean(ids, axis=1)
    top = int(np.nanargmax(mean))
    sentence = (f"ID rises by ≥ {RISE_FALL:.0%} to an interior peak and falls by ≥ {RISE_FALL:.0%} after it at "
                f"{holding} of {layers} layers; the layer mean goes {mean[0]:.1f} → {mean[top]:.1f} (step "
                f"{int(steps[top])}) → {mean[-1]:.1f}")
    return Verdict(holds, sentence, {"layers_holding": holding, "layers": layers, "first": float(mean[0]),
                                     "peak": float(mean[top]), "peak_step": int(steps[top]), "last": float(mean[-1])})


def layers_clearing(lows: np.ndarray, null: float) -> list[tuple[int, int]]:
    """(layers whose interval's lower bound exceeds ``null``, layers with a bound) per checkpoint row."""
    return [(int(np.sum(row[np.isfinite(row)] > null)), int(np.isfinite(row).sum()))
            for row in np.asarray(lows, dtype=np.float64)]


def early_and_persistent(low: np.ndarray, null: float, steps: np.ndarray, what: str) -> Verdict:
    """A tangent effect whose interval clears ``null`` (``low``: (checkpoint, layer) lower bounds) at a
    majority of layers from an early checkpoint (≤ EARLY of training) through the last."""
    lows = np.asarray(low, dtype=np.float64)
    steps = np.asarray(steps)
    if lows.ndim != 2 or lows.shape[0] < 2 or not np.isfinite(lows).any():
        return Verdict(None, f"{what}: no intervals over training to read", {})
    clearing = layers_clearing(lows, null)
    share = np.array([k / n if n else 0.0 for k, n in clearing])
    above = share > MAJORITY
    trained = steps > 0
    first = next((i for i in range(len(steps)) if trained[i] and above[i]), None)
    counts = ", ".join(f"{int(s)}: {k}/{n}" for s, (k, n) in zip(steps, clearing, strict=True))
    numbers = {"layers_clearing_by_step": {int(s): float(v) for s, v in zip(steps, share, strict=True)}}
    if first is None:
        return Verdict(False, f"{what}: the interval clears {null:g} at a majority of layers at no trained checkpoint "
                              f"(layers clearing, by step: {counts})", numbers)
    early = steps[first] <= EARLY * steps.max()
    persists = bool(above[first:].all())
    holds = bool(early and persists)
    sentence = (f"{what}: the interval first clears {null:g} at a majority of layers at step {int(steps[first])} "
                f"({'early' if early else 'not early'}: ≤ {EARLY:.0%} of {int(steps.max())} steps is early) and "
                f"{'stays clear' if persists else 'does not stay clear'} (layers clearing, by step: {counts})")
    return Verdict(holds, sentence, {**numbers, "first_step": int(steps[first]), "persists": persists})


def frequent_strongest(by_bucket: np.ndarray, centres: np.ndarray) -> Verdict:
    """Enrichment (layer, bucket) at one checkpoint largest for the most frequent tokens: Spearman ρ of
    bucket frequency vs value, per layer; holds when the mean ρ is positive and the most frequent bucket
    with a value is the largest at a majority of layers. No per-bucket interval: suggestive only."""
    from scipy.stats import spearmanr

    values = np.atleast_2d(np.asarray(by_bucket, dtype=np.float64))
    rhos, tops = [], 0
    for row in values:
        ok = np.isfinite(row)
        if ok.sum() < 3:
            continue
        rhos.append(float(spearmanr(np.asarray(centres)[ok], row[ok]).statistic))
        tops += bool(np.argmax(np.where(ok, np.asarray(centres), -np.inf)) == np.nanargmax(row))
    if not rhos:
        return Verdict(None, "fewer than 3 frequency buckets with a value at every layer", {})
    rho = float(np.mean(rhos))
    holds = rho > 0 and tops > MAJORITY * len(rhos)
    sentence = (f"mean Spearman ρ of token frequency vs enrichment over PCA {rho:+.2f} across {len(rhos)} layers; "
                f"the most frequent bucket is the strongest at {tops} of {len(rhos)} (no per-bucket interval: "
                "suggestive only)")
    return Verdict(holds, sentence, {"spearman": rho, "layers_top": tops, "layers": len(rhos)})
