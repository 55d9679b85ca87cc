"""Fixtures shared by every test folder; each folder adds its own in its conftest.py."""

from __future__ import annotations

import os

# Keep BLAS to one thread per process in tests: CI has two cores and Dask adds its own threads.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# pandas 3 backs string columns with pyarrow when it is installed (the test extra installs it for
# `tgo export`), and pyarrow's default allocator (mimalloc / jemalloc) reserves address space up
# front. The memory tests bind RLIMIT_DATA, which counts that reservation though none of it is
# used: measured 512 MB too tight for a store that peaks at 375 MB RSS. The system allocator keeps
# the limit about memory tgo uses.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


def pytest_collection_modifyitems(items: list) -> None:
    """Files with slow tests first, each file's tests in their own order.

    pytest-xdist (``--dist=loadfile``) hands whole files to its workers in collection order; with
    the long files first, the short ones fill the end of the run instead of one long file running
    alone on a 2-core machine while the other core idles.
    """
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)
