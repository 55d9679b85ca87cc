"""tgo_store: record transformer activations per checkpoint, layer and token into Zarr v3.

Everything up to and including the store; knows nothing of analysis.
"""

from __future__ import annotations

import warnings
from importlib.metadata import PackageNotFoundError, version

# Our commit records live under `_tgo/` inside the store, a prefix zarr rightly skips; and we
# consolidate metadata on purpose so plain `xarray.open_zarr` opens stores without probing.
warnings.filterwarnings("ignore", message="Object at _tgo is not recognized", category=UserWarning)
warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part", category=UserWarning)

try:
    __version__ = version("tgo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

# The public names load on first use (PEP 562): `import tgo_store.errors` or `tgo_store.store.records`
# from the measuring core of tgo_analysis must not pull in capture, ingest or torch.
_EXPORTS = {
    "ActivationLoader": "tgo_store.loader",
    "TgoError": "tgo_store.errors",
    "StoreInfo": "tgo_store.store.info",
    "store_info": "tgo_store.store.info",
    "StorePlan": "tgo_store.store.plan",
    "ingest": "tgo_store.ingestion",
    "ingest_block": "tgo_store.ingestion",
    "missing_blocks": "tgo_store.store.plan",
    "prepare_store": "tgo_store.ingestion",
    "open_store": "tgo_store.store.open",
    "Recorder": "tgo_store.recorder",
}


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tgo_store' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    """The loaded names and the lazy ones: tab completion and ``dir()`` find open_store, Recorder, ..."""
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "ActivationLoader",
    "Recorder",
    "StoreInfo",
    "StorePlan",
    "TgoError",
    "ingest",
    "ingest_block",
    "missing_blocks",
    "open_store",
    "prepare_store",
    "store_info",
]
