"""BLAS to one thread in these tests: numpy may be imported (by plugins) before the root
conftest sets OMP_NUM_THREADS, and oversubscribed BLAS on two cores made one test 20x slower."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def single_threaded_blas() -> Iterator[None]:
    with threadpool_limits(limits=1):
        yield
