"""Provenance attrs for results: package versions, scheduler, time, host."""

from __future__ import annotations

import functools
import platform
import time
from importlib.metadata import PackageNotFoundError, version

from tgo_analysis.results.completeness import RESULTS_SCHEMA

# the analysis's own packages, then those that made the activations (read from metadata: torch is not imported)
PACKAGES = ("tgo", "numpy", "scipy", "dask", "distributed", "xarray", "zarr", "scikit-learn", "threadpoolctl",
            "torch", "torchvision", "timm", "transformers", "tokenizers", "safetensors")


@functools.cache
def package_versions() -> dict[str, str]:
    """Versions of the packages that decide the numbers (read once per process: 30 ms)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


# attrs that describe the latest run over a results store, not its numbers: a resumed run that
# computes nothing rewrites them (a report drawn from the same numbers is still current)
PER_RUN_ATTRS = ("created_at", "analysis_summary", "token_passes", "read_amplification", "cluster_plan")


def provenance(scheduler: str) -> dict[str, object]:
    versions = dict(package_versions())
    return {"tgo_schema": RESULTS_SCHEMA, "created_by": f"tgo {versions['tgo']}", "package_versions": versions,
            "scheduler": scheduler, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": platform.node(), "python": platform.python_version()}
