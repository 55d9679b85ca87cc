"""Timing, sizes and synthetic stores shared by the benchmark rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

# (checkpoints, layers, samples, tokens, features) of the activation stores each size uses.
# "analysis" is the store of the analysis row: at `small` one ViT-S/8 layer (1024 images, 785
# tokens, 384 features, float32), the shape whose numpy / IncrementalPCA / roofline times the
# analysis issue quotes; "store" is the smaller store of the out-of-core and scaling rows.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"store": (1, 2, 256, 8, 32), "analysis": (1, 2, 256, 8, 32), "vit": {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2}, "images": 256},
    "small": {"store": (1, 4, 1024, 65, 192), "analysis": (1, 1, 1024, 785, 384), "vit": {"img_size": 32, "patch_size": 4, "embed_dim": 128, "depth": 6, "num_heads": 4}, "images": 2048},
    "medium": {"store": (1, 7, 1024, 197, 384), "analysis": (1, 4, 1024, 785, 384), "vit": {"img_size": 64, "patch_size": 8, "embed_dim": 192, "depth": 6, "num_heads": 3}, "images": 4096},
    "large": {"store": (1, 13, 1024, 785, 384), "analysis": (1, 13, 1024, 785, 384), "vit": {"img_size": 224, "patch_size": 8, "embed_dim": 384, "depth": 12, "num_heads": 6}, "images": 4096},
}


def write_json(path: Path, data: Any) -> None:
    """A benchmark's ``--out`` results file (its folder made), one indent per level as every results file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def best_of(func: Callable[[], Any], repeat: int = 3) -> float:
    """Fastest of a few runs: the machine is noisy, the minimum is the least disturbed."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def write_store(path: Path, shape: tuple[int, ...], seed: int = 0, chunk: int = 256, dtype: str = "float32") -> Path:
    """A float32 store with a power-law spectrum per token, written by plain xarray.

    Uncompressed like the stores tgo writes (float activations barely compress; see layout.py).
    """
    import dask.array as da
    import xarray as xr

    _, _, n, t, d = shape
    scale = (np.arange(1, d + 1, dtype=np.float32) ** -0.5)
    data = da.random.RandomState(seed).standard_normal(shape, chunks=(1, 1, min(chunk, n), t, d)).astype("float32")
    data = (data * da.from_array(scale)).astype(dtype)
    xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), data)}).to_zarr(
        str(path), mode="w", zarr_format=3, encoding={"activations": {"compressors": None}})  # as tgo writes
    return path


def run_child(code: str, *args: str) -> dict:
    """Run Python code in a fresh process (it reports its own peak RSS); returns its last JSON line."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "child failed")
    return json.loads(done.stdout.strip().splitlines()[-1])
