"""Fixtures shared by every test folder; each folder adds its own in its conftest.py."""

from __future__ import annotations

import os

# Keep BLAS to one thread per process in tests: CI has two cores and Dask adds its own threads.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
