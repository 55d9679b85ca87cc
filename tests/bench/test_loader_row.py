"""The loader benchmark row's plumbing at tiny size: every measure present, the epoch exact."""

from __future__ import annotations

from benchmarks import loader


def test_loader_row_reports_throughput_against_xarray() -> None:
    out = loader.run("tiny")
    for key in ("xarray_sequential_positions_s", "loader_shuffled_positions_s", "loader_sequential_positions_s",
                "loader_shuffled_over_xarray_sequential", "loader_shuffled_gbs"):
        assert out[key] > 0, key
    # a shuffled batch of 4096 draws from many samples; a sequential one from about 4096 / 17
    assert out["loader_shuffled_distinct_samples_per_batch"] > 3 * out["loader_sequential_distinct_samples_per_batch"]
