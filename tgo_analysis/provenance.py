"""Provenance attrs for results: package versions, scheduler, time, host."""

from __future__ import annotations

import platform
import time
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("tgo", "numpy", "scipy", "dask", "distributed", "xarray", "zarr", "scikit-learn", "threadpoolctl")


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def provenance(scheduler: str) -> dict[str, object]:
    return {"created_by": f"tgo {package_versions()['tgo']}", "package_versions": package_versions(),
            "scheduler": scheduler, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": platform.node(), "python": platform.python_version()}
