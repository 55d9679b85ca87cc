"""`python -m benchmarks.planted_local [--seeds 10] [--out FILE]`: how much planted local tangency the
tangent statistic recovers (issue 29: at least 1.8x its null on a planted store).

Two planted stores (``tests.gradients.tangent_stores.planted_store``: each gradient a random
combination of the atoms active at its own position): SPEC 8's calibration store (4 atoms in D = 16,
2 active) and the reviewer's shape (8 atoms in D = 64, each active with probability 0.35). For
each seed, ``tgo_analysis.analyze`` reads ``local_tangent_energy / local_tangent_null`` with the
sparse semi-NMF (the default ``tangent_sparsity``) and with Ding's plain semi-NMF (sparsity 0), and
the true atoms give the ceiling: their own codes, activity rule and a permuted-position null on the
same positions. Also the share of seeds whose ``local_tangent_excess_ci`` excludes 0.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_json
from tgo_analysis.kernels.bootstrap import DEFAULT_REPLICATES
from tgo_analysis.kernels.sparse_seminmf import DEFAULT_SPARSITY
from tgo_analysis.kernels.tangent_local import (
    active_atoms,
    code_solver,
    nonnegative_codes,
    projected_shares,
)

STORES = {
    "spec8_calibration": {"d": 16, "atoms": 4, "active": 2},
    "reviewer_shape": {"d": 64, "atoms": 8, "probability": 0.35},
}


def true_atoms_ratio(seed: int, shape: dict) -> float:
    """local / null with the planted atoms themselves (the same draw as ``planted_store(seed)``)."""
    from tests.gradients.tangent_stores import planted_store, sparse_activations

    _, _, w = sparse_activations(np.random.default_rng(seed), **shape)
    ds = planted_store(seed, **shape)
    x = ds.activations.values.reshape(-1, w.shape[1]).astype(np.float64)
    g = ds.gradients.values.reshape(-1, w.shape[1]).astype(np.float64)
    solver = code_solver(w)
    active = active_atoms(nonnegative_codes(x, solver), w)
    other = np.random.default_rng([0x9E11, seed]).permutation(len(x))
    return float(np.nanmean(projected_shares(g, active, solver)) / np.nanmean(projected_shares(g, active[other], solver)))


def fitted(seed: int, shape: dict, sparsity: float, bootstrap: int) -> dict[str, float]:
    import tgo_analysis
    from tests.gradients.tangent_stores import planted_store

    params = {"rank": shape["atoms"], "iterations": 500, "control_draws": 8, "bootstrap": bootstrap,
              "stability": False, "sparsity": sparsity}
    res = tgo_analysis.analyze(planted_store(seed, **shape), "tangent", progress=False, params={"tangent": params})
    local, null = (float(res[k].values.ravel()[0]) for k in ("local_tangent_energy", "local_tangent_null"))
    low = float(res["local_tangent_excess_ci"].values.ravel()[0]) if bootstrap else float("nan")
    return {"ratio": local / null, "local": local, "null": null, "excess_ci_low": low}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_REPLICATES)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "seeds": args.seeds, "sparsity": DEFAULT_SPARSITY,
                           "bootstrap": args.bootstrap, "stores": {}}
    for name, shape in STORES.items():
        rows = {"sparse": [], "plain": [], "true_atoms": []}
        for seed in range(args.seeds):
            rows["sparse"].append(fitted(seed, shape, DEFAULT_SPARSITY, args.bootstrap))
            rows["plain"].append(fitted(seed, shape, 0.0, args.bootstrap))
            rows["true_atoms"].append({"ratio": true_atoms_ratio(seed, shape)})
        summary: dict[str, Any] = {"shape": shape}
        for fit, values in rows.items():
            ratios = [r["ratio"] for r in values]
            summary[fit] = {"ratio_mean": round(float(np.mean(ratios)), 3), "ratio_min": round(float(min(ratios)), 3)}
            if fit != "true_atoms" and args.bootstrap:
                summary[fit]["excess_ci_excludes_0"] = round(float(np.mean([r["excess_ci_low"] > 0 for r in values])), 3)
        out["stores"][name] = summary
        print(name, json.dumps(summary), flush=True)
    if args.out:
        write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()
