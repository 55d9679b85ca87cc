"""`python -m benchmarks.randomized_paths OLD NEW STORE [--out FILE]`: the randomized all-token spectrum
of two tgo trees, each against its own exact (Gram) spectrum of the same store (issue 28).

The structure step replaced dask's ``svd_compressed`` (the old tree) by the engine's own passes of
Halko et al.'s randomized SVD (``kernels/randomized.py``): different random draws, so the two trees'
randomized numbers cannot be equal bit for bit. What must hold instead is that each approximates the
exact spectrum at least as well as the other. Each tree runs ``tgo analyze STORE --metrics all_tokens``
with ``--all-tokens gram`` and ``--all-tokens randomized`` (its own code, ``benchmarks.tree_equality``'s
runner); per (checkpoint, layer) the relative error of the top-k eigenvalues, and the largest change
of ``effective_rank_all`` and ``alpha_all``, against the Gram path. The two trees' Gram paths are
also compared with each other (they must agree to float rounding).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_json
from benchmarks.tree_equality import run_tgo

TOP = (10, 50)


def spectra(root: Path, store: Path, method: str, work: Path, tag: str) -> Path:
    out = work / f"{tag}-{method}.zarr"
    if not out.exists():
        run_tgo(root, ["analyze", str(store), "--metrics", "all_tokens", "--all-tokens", method, "--out", str(out)])
    return out


def compare(exact: Path, approx: Path) -> dict[str, Any]:
    import xarray as xr

    a, b = xr.open_zarr(str(exact)), xr.open_zarr(str(approx))
    ea, eb = a["eigenvalues_all"].values, b["eigenvalues_all"].values
    out: dict[str, Any] = {}
    for k in TOP:
        rel = np.abs(eb[..., :k] - ea[..., :k]) / np.abs(ea[..., :k])
        out[f"top{k}_max_rel_error"] = float(np.nanmax(rel))
    for name in ("effective_rank_all", "alpha_all"):
        if name in a and name in b:
            diff = np.abs(a[name].values - b[name].values)
            out[f"{name}_max_abs_change"] = float(np.nanmax(diff)) if np.isfinite(diff).any() else None
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("store", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tgo-randomized-paths"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "store": str(args.store),
                           "old": str(args.old), "new": str(args.new), "trees": {}}
    paths = {tag: {m: spectra(root.resolve(), args.store, m, args.work, tag) for m in ("gram", "randomized")}
             for tag, root in (("old", args.old), ("new", args.new))}
    for tag in paths:
        out["trees"][tag] = compare(paths[tag]["gram"], paths[tag]["randomized"])
    out["gram_old_vs_new"] = compare(paths["old"]["gram"], paths["new"]["gram"])
    print(json.dumps(out, indent=1))
    if args.out:
        write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()
