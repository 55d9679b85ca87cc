"""Device activations -> host block buffers of the storage dtype, checked for NaN/Inf.

A block (layer, sample, token, feature) is filled batch by batch. On CUDA each batch is cast
on the device and copied into page-locked host memory on a side stream, one contiguous
(batch, token, feature) slice per layer, so the next forward pass runs while the copy is in
flight; block buffers come from a small pool and go back to it once the writer has stored
them (pinning memory is slow, reusing it is free). On the CPU the cast and the copy are one
pass into ordinary memory.

NaN/Inf are detected with one reduction per batch on the storage-dtype values (a sum is
finite exactly when every term is, and cannot overflow: float16 sums run in float32, float32
sums in float64). The sums stay on the device and are read once per block, so CUDA is never
synchronised per batch; the measured cost on the CPU is 1 ms per 64-image batch against 16 ms
for `isfinite(...).all()` on the float32 activations and again on the float16 copy.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np


def stack_parts(parts: list[list[Any]]) -> Any:
    """(L, B, T, D) from per-layer token pieces (a capturer's ``parts``)."""
    import torch

    return torch.stack([p[0] if len(p) == 1 else torch.cat(p, dim=1) for p in parts])


def torch_dtype(dtype: str) -> Any:
    """The torch dtype of a storage dtype name (``ingest.DTYPES``)."""
    import torch

    return getattr(torch, dtype)


def pinned_buffer(shape: Sequence[int], dtype: Any, device: Any) -> Any:
    """Host memory for device copies: page-locked when the device is CUDA (async copies need it)."""
    import torch

    pin = torch.device(device).type == "cuda" and torch.cuda.is_available()
    return torch.empty(tuple(shape), dtype=dtype, pin_memory=pin)


class BufferPool:
    """At most ``size`` host block buffers per shape; ``acquire`` waits for a ``release``.

    The bound is what keeps ingest memory at a few blocks whatever N is: capture cannot run
    ahead of the writer by more than the pool.
    """

    def __init__(self, device: Any, size: int = 3):
        self.device, self.size = device, size
        self._free: dict[tuple, list[Any]] = {}
        self._count: dict[tuple, int] = {}
        self._by_address: dict[int, Any] = {}
        self._cond = threading.Condition()

    def acquire(self, shape: Sequence[int], dtype: Any) -> Any:
        key = (tuple(int(s) for s in shape), dtype)
        with self._cond:
            while not self._free.get(key) and self._count.get(key, 0) >= self.size:
                self._cond.wait()
            if self._free.get(key):
                return self._free[key].pop()
            self._count[key] = self._count.get(key, 0) + 1
        tensor = pinned_buffer(key[0], dtype, self.device)
        with self._cond:
            self._by_address[tensor.data_ptr()] = tensor
        return tensor

    def release(self, array: np.ndarray | Any) -> None:
        """Give a buffer back, as the tensor or as the numpy view the writer was handed."""
        address = array.ctypes.data if isinstance(array, np.ndarray) else array.data_ptr()
        with self._cond:
            tensor = self._by_address.get(address)
            if tensor is None:
                return
            self._free.setdefault((tuple(tensor.shape), tensor.dtype), []).append(tensor)
            self._cond.notify_all()


class NonFiniteActivations(ValueError):
    """Some layers of a block hold NaN or Inf; ``layers`` are their positions in the block."""

    def __init__(self, layers: list[int]):
        super().__init__(f"NaN/Inf at layer positions {layers}")
        self.layers = layers


class BlockFiller:
    """Fill one block buffer batch by batch with device activations (L, B, T, D)."""

    def __init__(self, device: Any, dtype: str, pool: BufferPool | None = None):
        import torch

        self.device = torch.device(device)
        self.dtype = torch_dtype(dtype)
        self.sum_dtype = torch.float32 if dtype == "float16" else torch.float64
        self.pool = pool or BufferPool(self.device)
        self.cuda = self.device.type == "cuda"
        self._stream = torch.cuda.Stream(device=self.device) if self.cuda else None
        self._host: Any = None
        self._sums: Any = None

    def start(self, shape: Sequence[int]) -> None:
        self._host = self.pool.acquire(shape, self.dtype)
        self._sums = None

    def add(self, parts: list[list[Any]], offset: int) -> None:
        """Cast, check and copy one batch into samples [offset, offset + B) of the block.

        ``parts``: per layer, (B, t, D) tensors that concatenate along tokens (a capturer's
        ``parts``). On the CPU each piece is cast while it is copied into place; on CUDA the
        layer is assembled and cast on the device, then copied as one contiguous slice.
        """
        import torch

        batch = int(parts[0][0].shape[0])
        rows = slice(offset, offset + batch)
        if self.cuda:
            stored = stack_parts(parts).to(self.dtype)
            self._accumulate(stored.sum(dim=(1, 2, 3), dtype=self.sum_dtype))
            self._stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self._stream):
                for layer in range(stored.shape[0]):  # each destination slice is contiguous
                    self._host[layer, rows].copy_(stored[layer], non_blocking=True)
                stored.record_stream(self._stream)
            return
        sums = []
        for layer, pieces in enumerate(parts):
            start, total = 0, 0
            for piece in pieces:
                stop = start + int(piece.shape[1])
                target = self._host[layer, rows, start:stop]
                target.copy_(piece.detach())
                total = total + target.sum(dtype=self.sum_dtype)
                start = stop
            sums.append(total)
        self._accumulate(torch.stack(sums))

    def _accumulate(self, sums: Any) -> None:
        self._sums = sums if self._sums is None else self._sums + sums

    def finish(self) -> np.ndarray:
        """Wait for the copies; the block as numpy, or NonFiniteActivations (buffer released)."""
        import torch

        if self.cuda:
            self._stream.synchronize()
        host, self._host = self._host, None
        if self._sums is not None:
            bad = (~torch.isfinite(self._sums)).nonzero().flatten().tolist()
            if bad:
                self.pool.release(host)
                raise NonFiniteActivations([int(i) for i in bad])
        return host.numpy()

    def abandon(self) -> None:
        """Give back a half-filled buffer (an error stopped the block)."""
        if self._host is not None:
            if self.cuda:
                self._stream.synchronize()
            self.pool.release(self._host)
            self._host = None
