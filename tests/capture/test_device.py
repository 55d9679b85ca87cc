"""One --device parser for ingest and analysis (tgo_store.device_option, issue 17)."""

from __future__ import annotations

import pytest
import torch

from tgo_store.device_option import resolve_device
from tgo_store.errors import TgoError


def test_ingest_names() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu0", "torch:cpu", "tpu"):
        with pytest.raises(TgoError, match="--device"):
            resolve_device(bad)


def test_analysis_names() -> None:
    assert resolve_device("cpu", numpy_cpu=True) == "cpu"
    assert resolve_device("torch:cpu", numpy_cpu=True) == "torch:cpu"
    for bad in ("auto", "gpu0", "mps"):
        with pytest.raises(TgoError, match="unknown --device"):
            resolve_device(bad, numpy_cpu=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
@pytest.mark.parametrize("numpy_cpu", [False, True])
def test_a_gpu_torch_does_not_see_is_refused(numpy_cpu) -> None:
    for name in ("cuda", "cuda:1"):
        with pytest.raises(TgoError, match="no CUDA device"):
            resolve_device(name, numpy_cpu=numpy_cpu)
