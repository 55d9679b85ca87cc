"""Stores written by plain xarray (no tgo code): planted power-law spectra per token."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr


def planted_activations(n_ckpt: int = 2, n_layer: int = 3, n: int = 160, t: int = 5, d: int = 48,
                        seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n_ckpt, n_layer, n, t, d), dtype=np.float32)
    for c in range(n_ckpt):
        for layer in range(n_layer):
            shared = rng.standard_normal((n, 1, d))
            for tok in range(t):
                alpha = 0.6 + 0.3 * layer + 0.1 * tok + 0.05 * c
                basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
                x = (rng.standard_normal((n, d)) * np.arange(1, d + 1) ** (-alpha / 2)) @ basis.T
                out[c, layer, :, tok] = x + 0.3 * shared[:, 0] + tok
    out[:, 0, :, 0] = 1.5  # a zero-variance CLS-like token at layer 0
    return out


def write_plain_store(path, data: np.ndarray, chunk: int = 48) -> str:
    ds = xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), data)},
                    coords={"checkpoint": [0, 100][: data.shape[0]] if data.shape[0] <= 2 else np.arange(data.shape[0])})
    ds = ds.chunk({"checkpoint": 1, "layer": 1, "sample": chunk})
    ds.to_zarr(str(path), zarr_format=3, mode="w")
    return str(path)


@pytest.fixture(scope="session")
def plain_store(tmp_path_factory) -> tuple[str, np.ndarray]:
    data = planted_activations()
    return write_plain_store(tmp_path_factory.mktemp("plain") / "store.zarr", data), data
