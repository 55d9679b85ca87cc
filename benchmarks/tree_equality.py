"""`python -m benchmarks.tree_equality OLD NEW STORE... [--metrics M] [--workers 2] [--ingest]`: are two tgo
trees' results equal, variable by variable (issue 28: every number unchanged)?

For each activation store, each tree runs its own ``tgo analyze`` (a subprocess with ``PYTHONPATH`` set to
the tree, the same metrics, options and seed) into a results store of its own; then every array present
in both results stores is compared on its decoded values: max absolute and max relative difference
(``|a - b| / max(|a|, |b|)``), NaNs where the other has a number, and the arrays only one side has.
``--ingest`` first records each STORE again with each tree's own ``tgo ingest`` (the line ``tgo info``
prints) and compares the two stores the same way, decoded: stores carry a checksum codec since issue 30,
so their bytes differ while their arrays must not. Make the old tree with
``git worktree add /tmp/tgo-old <commit>``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_json

SAME = 1e-12  # a relative difference at or below this is float noise, not a change
# SPEC 8 (alpha's fit range and spectral_flatness use resolved eigenvalues only), checked with the OLD
# tree's own kernels: its spectral_metrics on the NEW results' eigenvalues, each cut at the new
# resolved_rank, must give the new alpha, alpha_r2 and spectral_flatness; its clustering on the new
# alpha, less any layer where no token has an alpha, must give the new alpha_cluster; metric_reason may differ only where the old fit was fine
# (0) and the new one has too few resolved ranks (5). Run with PYTHONPATH set to the old tree.
RESOLVED_CHECK = """
import json, sys
import numpy as np, xarray as xr
from tgo_analysis.kernels.metrics import spectral_metrics
from tgo_analysis.kernels.clustering import cluster_alpha_trajectories
new, old = xr.open_zarr(sys.argv[1]), xr.open_zarr(sys.argv[2])
d, fit, k, seed = int(sys.argv[3]), tuple(json.loads(sys.argv[4])), int(sys.argv[5]), int(sys.argv[6])
def diff(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    both = ~(np.isnan(a) | np.isnan(b))
    return {"max_abs": float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0,
            "nan_mismatch": int((np.isnan(a) != np.isnan(b)).sum()), "compared": int(both.sum())}
out = {}
for s in ("", "_pooled", "_all"):
    if f"eigenvalues{s}" not in new or f"resolved_rank{s}" not in new:
        continue
    eigs = new[f"eigenvalues{s}"]
    rank = new[f"resolved_rank{s}"].transpose(*eigs.dims[:-1]).values
    values = eigs.values
    kept = np.where(np.arange(values.shape[-1]) < rank[..., None], values, 0.0)
    ref = spectral_metrics(kept, d, fit)
    for name in ("alpha", "alpha_r2", "spectral_flatness"):
        var = f"alpha_r2{s}" if name == "alpha_r2" else f"{name}{s}"
        if var in new:
            out[var] = diff(new[var].transpose(*eigs.dims[:-1]).values, ref[name])
    if s == "" and "metric_reason" in new and "metric_reason" in old:
        a = old["metric_reason"].transpose(*eigs.dims[:-1]).values
        b = new["metric_reason"].transpose(*eigs.dims[:-1]).values
        changed = a != b
        explained = changed & (a == 0) & (b == 5) & np.isin(ref["reason"], (1, 2))
        out["metric_reason"] = {"changed": int(changed.sum()), "old_0_new_5_few_resolved": int(explained.sum()),
                                "unexplained": int((changed & ~explained).sum())}
if "alpha_cluster" in new and "alpha" in new:
    last = new["alpha"].isel(checkpoint=-1)  # a layer no token resolves is left out (27bc80a, for SPEC 8)
    again = cluster_alpha_trajectories(last.isel(layer=np.isfinite(last).any("token").values), k, seed=seed)
    out["alpha_cluster"] = diff(new["alpha_cluster"].values, again.values)
print(json.dumps(out))
"""


def cli_module(root: Path) -> str:
    """The module behind the ``tgo`` script in this tree (the application moved out of analysis in issue 28)."""
    return "tgo_app.cli" if (root / "tgo_app" / "cli" / "__main__.py").exists() else "tgo_analysis.orchestration.cli"


def run_tgo(root: Path, args: list[str]) -> float:
    """``tgo ARGS`` with this tree's own code; the wall seconds it took."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", cli_module(root), *args], cwd=root, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"tgo {shlex.join(args)} in {root} failed:\n{done.stderr[-4000:]}")
    return time.perf_counter() - start


def arrays(path: Path) -> dict[str, Any]:
    """Every array of a Zarr group, by its path inside the group (bookkeeping groups included)."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    return {name: node for name, node in group.members(max_depth=None) if isinstance(node, zarr.Array)}


def _slabs(array: Any) -> Any:
    """The decoded values of an array, one index of its first axis at a time (a store may not fit in RAM)."""
    if array.ndim == 0 or array.nbytes < 2**28:
        yield array[...]
        return
    step = max(1, array.shape[0] * 2**27 // array.nbytes)
    for start in range(0, array.shape[0], step):
        yield array[start:start + step]


def compare_array(a: Any, b: Any) -> dict[str, Any]:
    """Max abs / relative difference of two arrays' decoded values, or whether non-numeric values are equal."""
    if a.shape != b.shape:
        return {"shape_old": list(a.shape), "shape_new": list(b.shape), "equal": False}
    numeric = all(np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.bool_) for x in (a, b))
    out: dict[str, Any] = {"shape": list(a.shape), "dtype_old": str(a.dtype), "dtype_new": str(b.dtype)}
    if not numeric:
        out["equal"] = all(np.array_equal(np.asarray(x, dtype=object), np.asarray(y, dtype=object))
                           for x, y in zip(_slabs(a), _slabs(b), strict=True))
        return out
    max_abs = max_rel = 0.0
    nan_mismatch = finite = 0
    for x, y in zip(_slabs(a), _slabs(b), strict=True):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        nx, ny = np.isnan(x), np.isnan(y)
        nan_mismatch += int(np.count_nonzero(nx != ny))
        both = ~(nx | ny)
        finite += int(np.count_nonzero(both))
        if not both.any():
            continue
        x, y = x[both], y[both]
        same_inf = np.isinf(x) & (x == y)
        diff = np.where(same_inf, 0.0, np.abs(x - y))
        scale = np.maximum(np.abs(x), np.abs(y))
        rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
        max_abs, max_rel = max(max_abs, float(diff.max())), max(max_rel, float(rel.max()))
    out.update(max_abs=max_abs, max_rel=max_rel, nan_mismatch=nan_mismatch, compared=finite,
               equal=nan_mismatch == 0 and max_rel <= SAME)
    return out


def compare_stores(old: Path, new: Path) -> dict[str, Any]:
    """Every array in both stores compared; the arrays only one of them holds."""
    a, b = arrays(old), arrays(new)
    common = sorted(set(a) & set(b))
    variables = {name: compare_array(a[name], b[name]) for name in common}
    different = sorted(n for n, v in variables.items() if not v["equal"])
    only_old, only_new = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    return {"variables": variables, "different": different, "only_old": only_old, "only_new": only_new,
            "counts": {"in_both": len(common), "different": len(different), "only_old": len(only_old),
                       "only_new": len(only_new)}}


def ingest_arguments(store: Path, out: Path) -> list[str]:
    """The ``tgo ingest`` arguments that record ``store`` again into ``out`` (its ``tgo info`` line)."""
    import zarr

    from tgo_store.store.recreate import store_ingest_command

    attrs = zarr.open_group(str(store), mode="r").attrs.asdict()
    args = shlex.split(store_ingest_command(str(store), attrs))[1:]
    return [*args[:args.index("--store")], "--store", str(out)]


def compare_ingest(old: Path, new: Path, store: Path, work: Path) -> dict[str, Any]:
    """``store`` recorded again by each tree's own ingest; the two stores compared, decoded."""
    paths = {tag: work / f"{store.parent.name}-ingest-{tag}.zarr" for tag in ("old", "new")}
    seconds = {tag: run_tgo(root, ingest_arguments(store, paths[tag]))
               for tag, root in (("old", old), ("new", new))}
    return {"store": str(store), "ingest_seconds": seconds, **compare_stores(paths["old"], paths["new"])}


def _option(args: list[str], flag: str, default: str) -> str:
    return args[args.index(flag) + 1] if flag in args else default


def resolved_check(old: Path, store: Path, results: dict[str, Path], args: list[str]) -> dict[str, Any]:
    """RESOLVED_CHECK: the old tree's kernels on the new results' resolved eigenvalues, against the new values."""
    import zarr

    n_features = zarr.open_group(str(store), mode="r")["activations"].shape[-1]
    fit = [int(x) for x in _option(args, "--fit-range", "11:100").split(":")]
    done = subprocess.run([sys.executable, "-c", RESOLVED_CHECK, str(results["new"]), str(results["old"]),
                           str(n_features), json.dumps(fit), _option(args, "--clusters", "4"), _option(args, "--seed", "0")],
                          cwd=old, env={**os.environ, "PYTHONPATH": str(old)}, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the resolved-eigenvalue check failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def _max_abs(a: Any, b: Any) -> dict[str, Any]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    both = ~(np.isnan(a) | np.isnan(b))
    return {"max_abs": float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0,
            "nan_mismatch": int(np.count_nonzero(np.isnan(a) != np.isnan(b))), "compared": int(both.sum())}


def tangent_check(results: dict[str, Path]) -> dict[str, Any]:
    """SPEC 8's matched centring: the new ``pca_energy_centred`` is the old ``pca_energy``, and
    ``tangent_enrichment_vs_pca`` is E_T / pca_energy in both (so it moves only by the new denominator)."""
    import xarray as xr

    old, new = (xr.open_zarr(str(results[tag])) for tag in ("old", "new"))
    if "pca_energy_centred" not in new or "pca_energy" not in old:
        return {}
    ratio = "tangent_enrichment_vs_pca"
    return {"pca_energy_centred(new) - pca_energy(old)": _max_abs(new["pca_energy_centred"], old["pca_energy"]),
            f"{ratio} x pca_energy, new - old": _max_abs(new[ratio] * new["pca_energy"], old[ratio] * old["pca_energy"])}


def compare_analyze(old: Path, new: Path, store: Path, work: Path, label: str, args: list[str]) -> dict[str, Any]:
    """Each tree's ``tgo analyze STORE ARGS`` into its own results store; the two compared, and the
    differences SPEC 8's resolved-eigenvalue rule explains recomputed with the old tree's kernels."""
    paths = {tag: work / f"{label}-results-{tag}.zarr" for tag in ("old", "new")}
    seconds = {tag: run_tgo(root, ["analyze", str(store), "--out", str(paths[tag]), "--overwrite", "--quiet", *args])
               for tag, root in (("old", old), ("new", new))}
    return {"store": str(store), "arguments": args, "analyze_seconds": seconds,
            **compare_stores(paths["old"], paths["new"]), "spec8_resolved_check": resolved_check(old, store, paths, args),
            "spec8_tangent_check": tangent_check(paths)}


def summary(label: str, result: dict[str, Any]) -> list[str]:
    """The arrays that differ, with their differences, and the arrays only one side holds."""
    lines = [f"## {label}: {len(result['variables'])} arrays in both, {len(result['different'])} differ"]
    for name in result["different"]:
        v = result["variables"][name]
        lines.append(f"  {name}: max abs {v.get('max_abs', '-'):.3g} max rel {v.get('max_rel', '-'):.3g} "
                     f"NaN mismatches {v.get('nan_mismatch', '-')}" if "max_rel" in v else f"  {name}: {v}")
    for side in ("only_old", "only_new"):
        if result[side]:
            lines.append(f"  {side}: {', '.join(result[side])}")
    for name, check in result.get("spec8_resolved_check", {}).items():
        lines.append(f"  SPEC 8 resolved rule, old kernels on new spectra: {name}: {check}")
    for name, check in result.get("spec8_tangent_check", {}).items():
        lines.append(f"  SPEC 8 tangent, matched centring: {name}: {check}")
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("stores", type=Path, nargs="+", help="activation stores (each: its label is its folder's name)")
    parser.add_argument("--metrics", default="all")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--workers", type=int, default=None, help="also run each analysis on a LocalCluster of N")
    parser.add_argument("--extra", default="", help="more `tgo analyze` arguments, one shell string")
    parser.add_argument("--ingest", action="store_true", help="also compare each tree's ingest of each store")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tgo-tree-equality"))
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the outcome")
    args = parser.parse_args(argv)
    old, new = args.old.resolve(), args.new.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    base = ["--metrics", args.metrics, "--seed", args.seed, *shlex.split(args.extra)]
    outcome: dict[str, Any] = {"old": str(old), "new": str(new), "date": time.strftime("%Y-%m-%d"),
                               "tolerance_rel": SAME, "comparisons": {}}
    for store in args.stores:
        store = store.resolve()
        label = store.parent.name
        runs = {f"{label} analyze": base}
        if args.workers:
            runs[f"{label} analyze --workers {args.workers}"] = [*base, "--workers", str(args.workers)]
        for name, run_args in runs.items():
            tag = name.replace(" ", "_").replace("--", "")
            outcome["comparisons"][name] = compare_analyze(old, new, store, args.work, tag, run_args)
            print("\n".join(summary(name, outcome["comparisons"][name])), flush=True)
        if args.ingest:
            outcome["comparisons"][f"{label} ingest"] = compare_ingest(old, new, store, args.work)
            print("\n".join(summary(f"{label} ingest", outcome["comparisons"][f"{label} ingest"])), flush=True)
    if args.out:
        write_json(args.out, outcome)
        print(f"written: {args.out}")
    return outcome


if __name__ == "__main__":
    main()
