"""The seed papers' encoder/decoder claims read from planted numbers: each rule finds its pattern where
it was planted and not where it was not (a flat profile is no bell, a monotone ID no rise-and-fall,
an effect that appears late or fades is not 'early and persistent')."""

from __future__ import annotations

import numpy as np
import pytest

from tgo_analysis.report import seed_claims as C

BELL = np.array([0.20, 0.55, 0.70, 0.40, 0.15])
FLAT = np.array([0.06, 0.08, 0.09, 0.08, 0.05])
STEPS = np.array([0, 1, 4, 17, 72, 300])


def test_profile_shapes_follow_the_named_thresholds() -> None:
    shape, contrast, spread, peak = C.profile_shape(BELL)
    assert spread == pytest.approx(0.70 - 0.15)
    assert (shape, peak) == ("bell", 2) and contrast == pytest.approx(0.70 - 0.20)
    assert C.profile_shape(FLAT)[0] == "flat" and C.profile_shape(FLAT)[2] == pytest.approx(0.04)
    rising = np.linspace(0.1, 0.9, 5)  # monotone: its peak is an end, so no bell, and not flat either
    assert C.profile_shape(rising)[0] == "other"
    assert C.profile_shape(np.array([0.1, np.nan, 0.2]))[0] == "unknown"


def test_anisotropy_contrast_holds_only_for_a_bell_decoder_beside_a_flat_encoder() -> None:
    over_training = np.stack([FLAT, BELL, BELL])
    verdict = C.anisotropy_contrast(over_training, np.stack([FLAT] * 3), STEPS[:3])
    assert verdict.holds is True and verdict.numbers["checkpoints_holding"] == 2
    assert "bell" in verdict.sentence and "flat" in verdict.sentence
    assert C.anisotropy_contrast(FLAT, BELL).holds is False  # swapped roles
    assert C.anisotropy_contrast(FLAT, FLAT).holds is False  # both flat: no contrast


def test_rise_then_fall_needs_an_interior_peak_at_most_layers() -> None:
    up_down = np.array([10.0, 14.0, 16.0, 13.0, 11.0, 10.0])
    ids = np.stack([up_down, up_down * 1.1, up_down * 0.9, np.linspace(5, 9, 6)], axis=1)  # 3 of 4 layers
    verdict = C.rise_then_fall(ids, STEPS)
    assert verdict.holds is True and verdict.numbers["layers_holding"] == 3
    monotone = np.stack([np.linspace(5, 9, 6)] * 4, axis=1)
    assert C.rise_then_fall(monotone, STEPS).holds is False
    assert C.rise_then_fall(ids[:2], STEPS[:2]).holds is None  # two checkpoints cannot show both


def _lows(clearing_from: int, until: int | None = None, layers: int = 4) -> np.ndarray:
    lows = np.full((len(STEPS), layers), 0.9)  # below the null of 1
    lows[clearing_from:until] = 1.2
    return lows


def test_early_and_persistent_counts_only_intervals_that_clear_the_null() -> None:
    assert C.early_and_persistent(_lows(1), 1.0, STEPS, "E").holds is True  # from step 1 on
    late = C.early_and_persistent(_lows(5), 1.0, STEPS, "E")
    assert late.holds is False and "not early" in late.sentence  # first at step 300
    fading = C.early_and_persistent(_lows(1, 3), 1.0, STEPS, "E")
    assert fading.holds is False and "does not stay" in fading.sentence
    never = C.early_and_persistent(_lows(0, 1), 1.0, STEPS, "E")  # at initialisation only: not learned
    assert never.holds is False


def test_frequent_strongest_reads_the_direction_of_the_frequency_trend() -> None:
    centres = np.array([1.0, 4.0, 16.0, 64.0, 256.0])
    rising = np.tile(np.array([1.0, 1.1, 1.3, 1.6, 2.0]), (4, 1))
    assert C.frequent_strongest(rising, centres).holds is True
    assert C.frequent_strongest(rising[:, ::-1], centres).holds is False
    sparse = np.array([[1.0, np.nan, np.nan, np.nan, 2.0]])
    assert C.frequent_strongest(sparse, centres).holds is None
