"""Row 6: the same analysis on a LocalCluster with 1 and 2 worker processes (the analysis row's
store: one ViT-S/8 layer at `small`, one token chunk), cluster start-up included, as a user pays it.

The machine's memory bandwidth varies by a fifth from minute to minute, so the two runs are
interleaved ``REPEATS`` times and the medians kept (every repeat is in the result).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from benchmarks.analysis import SPECTRA, TGO
from benchmarks.common import SIZES, run_child, write_store

REPEATS = 3


def run(size: str = "small", device: str = "cpu") -> dict[str, float | list[float]]:
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        store = write_store(Path(tmp) / "s.zarr", SIZES[size]["analysis"])
        for _ in range(REPEATS):
            for workers, seconds in times.items():
                seconds.append(run_child(TGO, str(store), SPECTRA, json.dumps({"workers": workers}))["seconds"])
    one, two = statistics.median(times[1]), statistics.median(times[2])
    return {"workers_1_seconds": one, "workers_2_seconds": two, "speedup_2_over_1": one / two,
            "workers_1_repeats": times[1], "workers_2_repeats": times[2]}


if __name__ == "__main__":
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "small"), indent=1))
