"""The torch device backend of the engine (``--device cuda``, ``torch:cpu`` in tests).

The engine reads each sample block once per pass, as on the CPU, and plans passes with the
same memory budget. A statistic that can use a device declares torch kernels (functions whose
first argument is the torch device) and asks ``ctx.backend.run(kernel, ...)`` to run them; the
backend knows no statistic and no kernel, only its device. torch is imported lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tgo_store.device_option import resolve_device


@dataclass(frozen=True)
class TorchBackend:
    """Runs torch kernels on one device (picklable: it holds the device's name)."""

    device: str

    def torch_device(self) -> Any:
        import torch

        return torch.device("cpu" if self.device == "torch:cpu" else self.device)

    def run(self, kernel: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``kernel(torch device, *args, **kwargs)``: a statistic's declared torch kernel, on this device."""
        return kernel(self.torch_device(), *args, **kwargs)


def device_backend(device: str) -> TorchBackend | None:
    """The backend for an analysis device: None on the numpy path ('cpu')."""
    return None if device == "cpu" else TorchBackend(resolve_device(device, numpy_cpu=True))
