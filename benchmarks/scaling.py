"""Row 6: the same analysis on a LocalCluster with 1 and 2 worker processes (the analysis row's
store: one ViT-S/8 layer at `small`), cluster start-up included, as a user pays it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from benchmarks.analysis import SPECTRA, TGO
from benchmarks.common import SIZES, run_child, write_store


def run(size: str = "small", device: str = "cpu") -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = write_store(Path(tmp) / "s.zarr", SIZES[size]["analysis"])
        one = run_child(TGO, str(store), SPECTRA, json.dumps({"workers": 1}))["seconds"]
        two = run_child(TGO, str(store), SPECTRA, json.dumps({"workers": 2}))["seconds"]
    return {"workers_1_seconds": one, "workers_2_seconds": two, "speedup_2_over_1": one / two}
