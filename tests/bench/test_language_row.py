"""The language benchmark row's plumbing: its spectra part at tiny shapes (the real-model parts
take a minute even at --size tiny and run only in the benchmark itself)."""

from __future__ import annotations

import torch

from benchmarks import language


def test_pooled_spectra_part_agrees_with_numpy_and_reports_memory(tmp_path) -> None:
    out = language.pooled_spectra(tmp_path, language.SIZES["tiny"]["spectra"])
    assert out["spectra_lambda1_rel_diff_tgo_vs_numpy"] < 1e-9  # same λ1 as np.cov + eigvalsh, float64
    assert out["spectra_positions_growth"] == 4.0
    assert 0.5 < out["spectra_tgo_rss_growth"] < 2.0
    for key in ("spectra_numpy_in_memory_seconds", "spectra_roofline_seconds", "spectra_tgo_fraction_of_roofline"):
        assert out[key] > 0


def test_language_row_skips_cleanly_without_cuda() -> None:
    if torch.cuda.is_available():
        return
    assert language.run("tiny", "cuda") == {"skipped": "no CUDA device on this machine"}
