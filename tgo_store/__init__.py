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

from tgo_store.errors import TgoError  # noqa: E402
from tgo_store.info import StoreInfo, store_info  # noqa: E402
from tgo_store.ingest import StorePlan, ingest, ingest_block, missing_blocks, prepare_store  # noqa: E402
from tgo_store.open import open_store  # noqa: E402
from tgo_store.recorder import Recorder  # noqa: E402

__all__ = [
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
