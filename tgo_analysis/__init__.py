"""tgo_analysis: out-of-core spectral geometry of activation stores with Dask.

Reads any dataset with an ``activations`` variable of dims (checkpoint, layer, sample, token,
feature); never imports torch at module level.
"""

from __future__ import annotations

import importlib
import sys
import types
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tgo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

# The public names load on first use (PEP 562): `tgo --help` and `tgo --version` import this
# package through the CLI and must not pay for xarray, dask and pandas (about 1.5 s).
_EXPORTS = {"METRICS": "tgo_analysis.analyze", "analyze": "tgo_analysis.analyze"}


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tgo_analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """Keeps ``tgo_analysis.analyze`` the function once the submodule of that name is imported
    (the import system sets a package attribute per submodule; eagerly importing did the same)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["METRICS", "__version__", "analyze"]


def __dir__() -> list[str]:
    """The public names with the loaded ones (tab completion; names loaded on first use are listed too)."""
    return sorted({*globals(), *__all__})
