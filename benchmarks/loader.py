"""Row: ActivationLoader throughput against a plain sequential xarray read of the same layer and
against the same layer exported as a flat-row Arrow dataset read back with `datasets`.

One store of at least 2 GB (small and up; `tiny` is the plumbing check), float16 like tgo
writes, one piece per ~34 MB sample chunk. Measured side by side in one run, all from the page
cache (the store was just written): the loader's shuffled epoch (seeded piece order + mixing
buffer, float32 batches of 4096), its unshuffled epoch, and xarray reading the layer block by
block converted to float32 (the least work that yields the same float32 values, in order).
Where the `datasets` library is installed, the same layer is exported with `tgo export --format
hf-datasets` (one row per position, activations as a fixed-size float32 list: the Arrow form a
SAELens-style activation cache takes, flat rather than per sequence) and read back with
`datasets.load_from_disk` as numpy and as torch batches of 4096, in order (`Dataset.iter`) and
in a full shuffle (`Dataset.shuffle(seed=0).iter`). Positions/s compare like for like (the
same float32 (4096, D) batches); GB/s is the bytes of the source read per second (the float16
layer for xarray and the loader, the float32 Arrow files for `datasets`).
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
# datasets' shuffled reads gather ~11k positions/s here: a whole shuffled pass over the 2.1M
# positions of `small` would take ~3 min per format, so those two read the first batches only
SHUFFLED_BATCHES = {"tiny": None, "small": 128, "medium": 128, "large": 128}


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


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def arrow_epoch(ds, fmt: str, batches: int | None = None) -> tuple[float, int, float]:
    """A pass of float32 (BATCH, D) batches in the dataset's order (the first ``batches`` only, when
    given): seconds, positions, distinct samples per batch."""
    ds = ds.with_format(fmt, columns=["activations", "sample"])
    start, positions, distinct = time.perf_counter(), 0, []
    for i, batch in enumerate(ds.iter(batch_size=BATCH)):
        if batches is not None and i >= batches:
            break
        x = batch["activations"]
        assert str(x.dtype).endswith("float32") and x.ndim == 2, (x.dtype, x.shape)
        positions += x.shape[0]
        if len(distinct) < 50:
            distinct.append(len(np.unique(np.asarray(batch["sample"]))))
    return time.perf_counter() - start, positions, float(np.mean(distinct))


def arrow(tmp: Path, path: Path, layer: int, positions: int, shuffled_batches: int | None) -> dict[str, float]:
    """Export the layer with tgo export (hf-datasets), then read it back with datasets, four ways
    (the shuffled reads over ``shuffled_batches`` batches when given, else a whole pass)."""
    import datasets

    from tgo_store.loader.export import export_hf_datasets

    out: dict[str, float] = {}
    start = time.perf_counter()
    summary = export_hf_datasets(str(path), layer, tmp / "arrow")
    out["export_s"] = time.perf_counter() - start
    out["export_positions_s"] = summary.rows / out["export_s"]
    arrow_gb = folder_bytes(tmp / "arrow") / 1e9
    out["arrow_gb"] = arrow_gb
    assert summary.rows == positions, (summary.rows, positions)
    back = datasets.load_from_disk(str(tmp / "arrow"))
    orders = {"sequential": back, "shuffled": back.shuffle(seed=0)}
    for fmt in ("numpy", "torch"):
        for order, ds in orders.items():
            limit = shuffled_batches if order == "shuffled" else None
            seconds, got, distinct = arrow_epoch(ds, fmt, limit)
            assert got == (positions if limit is None else min(positions, limit * BATCH)), (got, positions)
            key = f"arrow_{order}_{fmt}"
            out[f"{key}_positions"] = got
            out[f"{key}_positions_s"], out[f"{key}_gbs"] = got / seconds, arrow_gb * got / positions / seconds
            out[f"{key}_distinct_samples_per_batch"] = distinct
    return out


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
            out.update(arrow(Path(tmp), path, 1, positions, SHUFFLED_BATCHES[size]))
            for order in ("shuffled", "sequential"):
                for fmt in ("numpy", "torch"):
                    out[f"loader_{order}_over_arrow_{order}_{fmt}"] = (out[f"loader_{order}_positions_s"]
                                                                      / out[f"arrow_{order}_{fmt}_positions_s"])
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "small"), indent=1))
