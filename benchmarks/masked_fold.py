"""Cost of the masked per-token fold (issue 18 item 8) against the unmasked fast path, side by side.

Same (N, T, D) float32 data, folded in sample blocks of 64: once without a mask (dsyrk fast path),
once with right padding (per-token counts). Writes benchmarks/results/masked_fold.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from tgo_analysis.kernels.moments import fold_masked_moments, fold_moments


def timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(n: int = 512, t: int = 32, d: int = 128, block: int = 64) -> dict:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, t, d)).astype(np.float32)
    valid = np.arange(t)[None, :] < rng.integers(t // 2, t + 1, size=n)[:, None]

    def plain() -> None:
        acc = None
        for lo in range(0, n, block):
            acc = fold_moments(acc, x[lo:lo + block])

    def masked() -> None:
        acc = None
        for lo in range(0, n, block):
            acc = fold_masked_moments(acc, x[lo:lo + block], valid[lo:lo + block])

    a, b = timed(plain), timed(masked)
    out = {"shape": [n, t, d], "block_rows": block, "unmasked_s": a, "masked_s": b, "masked_over_unmasked": b / a,
           "note": "best of 3, one process, shared 2-core machine under load from other agents"}
    Path(__file__).parent.joinpath("results", "masked_fold.json").write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    print(main())
