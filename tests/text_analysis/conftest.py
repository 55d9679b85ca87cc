"""One BLAS thread, as in the analysis core tests (two-core CI), and the synthetic text store."""

from __future__ import annotations

import pytest
import xarray as xr

from tests.analysis_core.conftest import single_threaded_blas  # noqa: F401
from tests.text_analysis.support import write_text_store


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> xr.Dataset:
    return write_text_store(str(tmp_path_factory.mktemp("text") / "store.zarr"))
