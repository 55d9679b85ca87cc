"""Row 4: peak RSS of an analysis for stores of 1x, 2x and 4x the samples; it must stay flat."""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.analysis import SPECTRA, TGO
from benchmarks.common import SIZES, run_child, write_store


def run(size: str = "small", device: str = "cpu") -> dict[str, float]:
    c, n_layers, n, t, d = SIZES[size]["store"]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for factor in (1, 2, 4):
            store = write_store(Path(tmp) / f"x{factor}.zarr", (c, min(n_layers, 2), n * factor, t, d))
            result = run_child(TGO, str(store), SPECTRA)
            out[f"peak_rss_mb_{factor}x"] = result["peak_rss_mb"]
            out[f"store_mb_{factor}x"] = c * min(n_layers, 2) * n * factor * t * d * 4 / 1e6
    out["rss_growth_4x_over_1x"] = out["peak_rss_mb_4x"] / out["peak_rss_mb_1x"]
    return out
