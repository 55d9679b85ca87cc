"""Row: ActivationLoader throughput against a plain sequential xarray read of the same layer.

One store of at least 2 GB (small and up; `tiny` is the plumbing check), float16 like tgo
writes, one piece per ~34 MB sample chunk. Measured side by side in one run, all from the page
cache (the store was just written): the loader's shuffled epoch (seeded piece order + mixing
buffer, float32 batches of 4096), its unshuffled epoch, and xarray reading the layer block by
block converted to float32 (the least work that yields the same float32 values, in order).
Where the `datasets` library is installed, also a flat-row Arrow dataset of a slice of the
layer (what SAELens caches), read back as float32 numpy batches.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np

# (layers, samples, tokens, features): float16, so the store bytes are 2 * product
SHAPES = {"tiny": (2, 2048, 17, 64), "small": (2, 32768, 65, 256), "medium": (2, 32768, 65, 256),
          "large": (2, 65536, 65, 256)}
BLOCK = 1024  # samples per chunk: ~34 MB at small, the size of a tgo shard
BATCH = 4096
ARROW_SAMPLES = {"tiny": 256, "small": 2048, "medium": 2048, "large": 2048}


def write(path: Path, shape: tuple[int, ...]) -> int:
    import dask.array as da
    import xarray as xr

    layers, n, t, d = shape
    data = da.random.RandomState(0).standard_normal((1, layers, n, t, d), chunks=(1, 1, BLOCK, t, d))
    data = data.astype("float16")
    xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), data)}).to_zarr(
        str(path), mode="w", zarr_format=3, encoding={"activations": {"compressors": None}})
    return int(data.nbytes)


def xarray_sequential(path: Path, layer: int) -> tuple[float, int]:
    import xarray as xr

    act = xr.open_zarr(str(path)).activations
    n = act.sizes["sample"]
    start, positions = time.perf_counter(), 0
    for lo in range(0, n, BLOCK):
        x = act[0, layer, lo:lo + BLOCK].values.astype(np.float32)
        positions += x.shape[0] * x.shape[1]
    return time.perf_counter() - start, positions


def loader_epoch(path: Path, layer: int, **kw) -> tuple[float, int, float]:
    from tgo_store import ActivationLoader

    loader = ActivationLoader(str(path), layer=layer, batch_size=BATCH, **kw)
    start, positions, distinct = time.perf_counter(), 0, []
    for batch in loader:
        positions += len(batch["sample"])
        if len(distinct) < 50:
            distinct.append(len(np.unique(batch["sample"].numpy())))
    return time.perf_counter() - start, positions, float(np.mean(distinct))


def arrow(tmp: Path, path: Path, layer: int, samples: int) -> dict[str, float]:
    """The first ``samples`` samples as flat rows (one row per position) in a datasets Arrow folder."""
    import datasets
    import xarray as xr

    x = xr.open_zarr(str(path)).activations[0, layer, :samples].values
    flat = x.reshape(-1, x.shape[-1])
    start = time.perf_counter()
    ds = datasets.Dataset.from_dict({"activations": flat.astype(np.float32)})
    ds.save_to_disk(str(tmp / "arrow"))
    write_s = time.perf_counter() - start
    back = datasets.load_from_disk(str(tmp / "arrow")).with_format("numpy")
    start, positions = time.perf_counter(), 0
    for lo in range(0, len(back), BATCH):
        batch = back[lo:lo + BATCH]["activations"].astype(np.float32)
        positions += len(batch)
    read_s = time.perf_counter() - start
    shuffled = back.shuffle(seed=0)
    start = time.perf_counter()
    for lo in range(0, len(shuffled), BATCH):
        shuffled[lo:lo + BATCH]["activations"]
    return {"arrow_positions": positions, "arrow_write_s": write_s, "arrow_sequential_positions_s": positions / read_s,
            "arrow_shuffled_positions_s": positions / (time.perf_counter() - start)}


def run(size: str = "small", device: str = "cpu") -> dict[str, float | str]:
    shape = SHAPES[size]
    _, n, t, d = shape
    out: dict[str, float | str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.zarr"
        start = time.perf_counter()
        out["store_gb"] = write(path, shape) / 1e9
        out["write_s"] = time.perf_counter() - start
        layer_gb = n * t * d * 2 / 1e9
        out["layer_gb"] = layer_gb
        seconds, positions = xarray_sequential(path, 1)
        out["xarray_sequential_positions_s"], out["xarray_sequential_gbs"] = positions / seconds, layer_gb / seconds
        seconds, got, distinct = loader_epoch(path, 1)
        assert got == positions, (got, positions)
        out["loader_shuffled_positions_s"], out["loader_shuffled_gbs"] = got / seconds, layer_gb / seconds
        out["loader_shuffled_distinct_samples_per_batch"] = distinct
        seconds, got, distinct = loader_epoch(path, 1, shuffle=False)
        out["loader_sequential_positions_s"], out["loader_sequential_gbs"] = got / seconds, layer_gb / seconds
        out["loader_sequential_distinct_samples_per_batch"] = distinct
        out["loader_shuffled_over_xarray_sequential"] = (out["loader_shuffled_positions_s"]
                                                         / out["xarray_sequential_positions_s"])
        out["loader_sequential_over_xarray_sequential"] = (out["loader_sequential_positions_s"]
                                                           / out["xarray_sequential_positions_s"])
        if importlib.util.find_spec("datasets") is None:
            out["arrow"] = "skipped: the datasets library is not installed"
        else:
            out.update(arrow(Path(tmp), path, 1, ARROW_SAMPLES[size]))
            out["loader_shuffled_over_arrow_shuffled"] = (out["loader_shuffled_positions_s"]
                                                          / out["arrow_shuffled_positions_s"])
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "small"), indent=1))
