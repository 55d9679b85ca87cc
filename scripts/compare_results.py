"""Results of two tgo trees, variable by variable, on the same small stores (every metric).

Run each tree's analysis with its own PYTHONPATH, then compare::

    PYTHONPATH=/tmp/old python scripts/compare_results.py make /tmp/cmp          # the stores, once
    PYTHONPATH=/tmp/old python scripts/compare_results.py run /tmp/cmp old
    PYTHONPATH=$PWD     python scripts/compare_results.py run /tmp/cmp new
    PYTHONPATH=$PWD     python scripts/compare_results.py compare /tmp/cmp old new

``run ... --cluster`` analyses on a 2-worker ``distributed.LocalCluster`` instead of threads
(results named ``<tag>-cluster``). ``compare`` prints the largest relative difference of each
variable and exits non-zero when one exceeds ``--rtol`` (NaNs must match).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

STORES = ("image", "text")


def make(root: Path) -> None:
    """The tiny-ViT image store (2 checkpoints, gradients) and the synthetic text store."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support import ingest_kwargs, save_checkpoints
    from tests.text_analysis.support import write_text_store
    from tgo_store import ingest

    root.mkdir(parents=True, exist_ok=True)
    ckpts = save_checkpoints(root / "ckpts", [0, 1])
    ingest(str(root / "image.zarr"), **ingest_kwargs(ckpts, dtype="float32", gradients=True))
    write_text_store(str(root / "text.zarr"))


def run(root: Path, tag: str, cluster: bool) -> None:
    import xarray as xr

    from tgo_analysis import analyze

    extra = {"workers": 2, "memory_limit": "2GB"} if cluster else {}
    suffix = "-cluster" if cluster else ""
    for name in STORES:
        ds = xr.open_zarr(str(root / f"{name}.zarr"))
        analyze(ds, "all", out=str(root / f"{name}-{tag}{suffix}.zarr"), overwrite=True, progress=False,
                fit_range=(2, 12), seed=0, **extra)
        print(f"{name}: analysed ({tag}{suffix})")


def compare(root: Path, a: str, b: str, rtol: float) -> int:
    import xarray as xr

    worst = 0.0
    for name in STORES:
        left = xr.open_zarr(str(root / f"{name}-{a}.zarr"))
        right = xr.open_zarr(str(root / f"{name}-{b}.zarr"))
        missing = sorted(set(left.data_vars) ^ set(right.data_vars))
        if missing:
            print(f"{name}: variables in one only: {missing}")
            return 1
        for var in sorted(left.data_vars):
            x, y = left[var].values, right[var].values
            if x.dtype.kind not in "fc":
                same = np.array_equal(x, y)
                print(f"{name}.{var}: {'equal' if same else 'DIFFERENT'}")
                worst = max(worst, 0.0 if same else np.inf)
                continue
            if not np.array_equal(np.isnan(x), np.isnan(y)):
                print(f"{name}.{var}: NaN patterns differ")
                worst = np.inf
                continue
            ok = ~np.isnan(x)
            scale = np.maximum(np.abs(x[ok]), np.abs(y[ok]))
            floor = max(1e-300, 1e-12 * float(scale.max(initial=0.0)))
            rel = float(np.max(np.abs(x[ok] - y[ok]) / np.maximum(scale, floor), initial=0.0))
            worst = max(worst, rel)
            print(f"{name}.{var}: max relative difference {rel:.2e}")
    print(f"worst {worst:.2e} (rtol {rtol:.0e})")
    return int(worst > rtol)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("make", "run", "compare"))
    parser.add_argument("root", type=Path)
    parser.add_argument("tags", nargs="*")
    parser.add_argument("--cluster", action="store_true")
    parser.add_argument("--rtol", type=float, default=1e-9)
    args = parser.parse_args()
    if args.step == "make":
        make(args.root)
    elif args.step == "run":
        run(args.root, args.tags[0], args.cluster)
    else:
        return compare(args.root, args.tags[0], args.tags[1], args.rtol)
    return 0


if __name__ == "__main__":
    sys.exit(main())
