"""The mixing buffer: one window of positions held in the store dtype, drawn in a seeded order.

A window is allocated once at its final size and the readers write straight into it, so a
window costs its size and nothing more; batches are gathered from it (the store dtype is
converted to float32 only per batch).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_buffer(value: int | str, bytes_per_position: int) -> int:
    """Positions the buffer holds: an int is positions, a string like "512MB" / "2GiB" is bytes."""
    from tgo_store.errors import TgoError

    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        positions = int(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        unit = next((u for u in sorted(UNITS, key=len, reverse=True) if text.endswith(u)), None)
        try:
            number = float(text[: -len(unit)] if unit else text)
        except ValueError:
            raise TgoError(f"buffer_size {value!r} is neither a number of positions nor a size like '512MB'; "
                           "pass e.g. 1_000_000 or '512MB'") from None
        positions = int(number * (UNITS[unit] if unit else 1) // bytes_per_position) if unit else int(number)
    if positions < 1:
        raise TgoError(f"buffer_size {value!r} holds no position; pass at least one batch worth")
    return positions


@dataclass
class Window:
    """Window ``index`` of an epoch: its positions (arrays of equal length) and their order."""

    index: int
    arrays: dict[str, np.ndarray]
    order: np.ndarray

    @classmethod
    def allocate(cls, index: int, fields: dict[str, np.dtype], size: int, n_features: int,
                 order: np.ndarray) -> Window:
        arrays = {k: np.empty((size, n_features) if k == "activations" else (size,), dtype=d)
                  for k, d in fields.items()}
        return cls(index, arrays, order)

    def batches(self, batch_size: int, skip: int = 0, count: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Batches ``skip`` .. ``skip + count`` of the window, each a dict of numpy arrays."""
        n = len(self.order)
        stop = -(-n // batch_size) if count is None else skip + count
        for i in range(skip, stop):
            take = self.order[i * batch_size:(i + 1) * batch_size]
            if take.size == 0:
                return
            yield {k: (np.take(a, take, axis=0).astype(np.float32) if k == "activations" else np.take(a, take))
                   for k, a in self.arrays.items()}


def to_torch(batch: dict[str, np.ndarray], pin: bool, device: Any = None) -> dict[str, Any]:
    """Numpy batch -> torch tensors (pinned when asked, moved to ``device`` when given)."""
    import torch

    out = {}
    for key, value in batch.items():
        tensor = torch.from_numpy(value)
        if pin:
            tensor = tensor.pin_memory()
        if device is not None:
            tensor = tensor.to(device, non_blocking=pin)
        out[key] = tensor
    return out
