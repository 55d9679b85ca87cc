"""`tgo demo --text` end to end on a tiny configuration: train a decoder and an encoder -> checkpoint-N
folders -> ingest with gradients -> analyze -> one report with both; a second run resumes every stage."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.report import checks
from tgo_analysis.report.encoder_decoder import direction
from tgo_app.demos.text import ENCODER_LABEL, TextDemoConfig, run_text_demo, text_headline_rows
from tgo_store.store.open import open_store

# the demo's own stages on a tiny run; the tangent fits and intervals smaller than the demo's defaults
TINY = TextDemoConfig(train_steps=6, n_checkpoints=3, record_samples=32, batch_size=16,
                      analysis_options={"tangent_iterations": 60, "tangent_bootstrap": 20, "tangent_draws": 8})


@pytest.mark.slow
def test_text_demo_end_to_end_and_resume(tmp_path) -> None:
    summary = run_text_demo(tmp_path / "demo", config=TINY, progress=False)
    log = summary.training
    assert log["steps"] == TINY.steps() and log["held_out_loss"][-1] < log["held_out_loss"][0]
    store = open_store(summary.store)
    assert "gradients" in store and store.attrs["loss"]["kind"] == "causal_lm"
    assert store.sizes["checkpoint"] == len(TINY.steps()) and store.sizes["sample"] == TINY.record_samples
    results = xr.open_zarr(summary.results)
    for name in (N.TOP1_SHARE_POOLED, N.INTRINSIC_DIMENSION_POOLED, N.TANGENT_ENRICHMENT,
                 N.TANGENT_ALIGNMENT, N.FREQUENCY_CENTROID_SPEARMAN):
        assert np.isfinite(results[name].isel(layer=slice(1, None)).values).all(), name
    page = summary.report.read_text()
    assert "held-out loss" in page and "pooled" in page.lower()
    assert np.isfinite(results[N.MEAN_NORM_BY_FREQUENCY].isel(layer=slice(1, None)).values).any()  # was all NaN
    encoder = open_store(summary.others[ENCODER_LABEL].replace("metrics.zarr", "activations.zarr"))
    assert encoder.attrs["loss"]["kind"] == "masked_lm" and encoder.attrs["loss"]["seed"] == TINY.seed
    assert "gradients" in encoder and "token_masked" in encoder.coords
    assert encoder.sizes["checkpoint"] == len(TINY.steps()) >= 3
    encoder_results = xr.open_zarr(summary.others[ENCODER_LABEL])
    for ds, kind in ((results, "decoder"), (encoder_results, "encoder")):
        assert direction(ds) == kind
        for name in (N.TOP1_SHARE_POOLED, N.INTRINSIC_DIMENSION_POOLED, N.TANGENT_ENRICHMENT_VS_PCA,
                     N.LOCAL_TANGENT_EXCESS):
            assert np.isfinite(ds[name].isel(layer=slice(1, None)).values).any(), (kind, name)
    beside = log["beside"][ENCODER_LABEL]
    assert beside["steps"] == TINY.steps() and np.isfinite(beside["unigram_loss"])
    assert "Encoder and decoder" in page
    others = {label: xr.open_zarr(path).load() for label, path in summary.others.items()}
    problems = checks.check_report(results.load(), {"training": log, "compare": others})
    assert problems == [], checks.summary(problems)
    rows = text_headline_rows(results, summary.per_step("held_out_loss"))
    assert [r[0] for r in rows] == [str(s) for s in TINY.steps()]

    written = summary.report.stat().st_mtime_ns
    again = run_text_demo(tmp_path / "demo", config=TINY, progress=False)  # everything on disk: resumes
    assert again.report.stat().st_mtime_ns == written  # the results are unchanged: so is the page
    assert again.seconds["train"] < 5 and json.dumps(again.training) == json.dumps(log)  # NaN: no train loss yet
