"""Row: the exact linear CKA matrix of one ViT-S/8-shaped checkpoint (13 layers x 785 tokens x 384
features): tgo out of core vs numpy in memory (time, peak RSS) vs the minibatch-HSIC estimate
users compute today (Nguyen et al. 2021's unbiased HSIC averaged over minibatches; time and its
error against the exact value). All three on the same float16 store in one run, side by side."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import run_child

SAMPLES = {"tiny": 32, "small": 128, "medium": 512, "large": 2048}
SHAPE = (1, 13, None, 785, 384)  # ViT-S/8 at 224 px: CLS + 28 x 28 patches, 384 features, embeddings + 12 blocks
BATCH = 32  # the minibatch of the HSIC estimate
# each contender in a fresh process (its own peak RSS): argv = store, contender
CHILD = """
import json, sys, time
import numpy as np
store, which = sys.argv[1], sys.argv[2]
start = time.perf_counter()
if which == "tgo":
    import tgo_analysis, tgo_store
    res = tgo_analysis.analyze(tgo_store.open_store(store), "cka_layers", representations="mean", progress=False)
    matrix = res.cka_layers.values[0, :, :, 0]
else:
    import xarray as xr
    from benchmarks.cka import numpy_cka, minibatch_hsic_cka
    x = xr.open_zarr(store).activations.values[0]  # (layers, N, T, D): the checkpoint in RAM
    means = x.mean(axis=2, dtype=np.float64)  # buffered: no float64 copy of the checkpoint
    del x
    matrix = numpy_cka(means) if which == "numpy" else minibatch_hsic_cka(means, int(sys.argv[3]))
seconds = time.perf_counter() - start
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "peak_rss_mb": int(hwm.split()[1]) / 1024, "matrix": matrix.tolist()}))
"""


def numpy_cka(means: np.ndarray) -> np.ndarray:
    """The formula in memory, float64: ‖XᵀY‖² / (‖XᵀX‖ ‖YᵀY‖) for every pair of layers."""
    centred = means - means.mean(axis=1, keepdims=True)
    self_norms = [np.linalg.norm(c.T @ c) for c in centred]
    n = len(centred)
    out = np.empty((n, n))
    for a in range(n):
        for b in range(a, n):
            out[a, b] = out[b, a] = np.linalg.norm(centred[a].T @ centred[b]) ** 2 / (self_norms[a] * self_norms[b])
    return out


def unbiased_hsic(k: np.ndarray, m: np.ndarray) -> float:
    """Song et al. (2012)'s unbiased HSIC of two Gram matrices (diagonals zeroed), as in Nguyen et al. 2021."""
    n = k.shape[0]
    k, m = k.copy(), m.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(m, 0)
    ones = np.ones(n)
    term = np.sum(k * m) + (ones @ k @ ones) * (ones @ m @ ones) / ((n - 1) * (n - 2)) \
        - 2.0 / (n - 2) * (ones @ k @ m @ ones)
    return float(term / (n * (n - 3)))


def minibatch_hsic_cka(means: np.ndarray, batch: int) -> np.ndarray:
    """CKA from HSIC averaged over minibatches (Nguyen et al. 2021): what users stream today."""
    n_layers, n = means.shape[:2]
    hsic = np.zeros((n_layers, n_layers))
    batches = [slice(lo, lo + batch) for lo in range(0, n - batch + 1, batch)]
    for part in batches:
        grams = [means[layer, part] @ means[layer, part].T for layer in range(n_layers)]
        for a in range(n_layers):
            for b in range(a, n_layers):
                hsic[a, b] += unbiased_hsic(grams[a], grams[b]) / len(batches)
    hsic = np.triu(hsic) + np.triu(hsic, 1).T
    diagonal = np.sqrt(np.diag(hsic))
    return hsic / np.outer(diagonal, diagonal)


def write_residual_store(path: Path, shape: tuple[int, ...], chunk: int = 16) -> Path:
    """A float16 store whose layers drift like a residual stream (layer l = layer l-1 + a new part),
    so neighbouring layers are alike and far ones less: CKA values across the whole range."""
    import dask.array as da
    import xarray as xr

    scale = np.arange(1, shape[-1] + 1, dtype=np.float32) ** -0.5
    steps = da.random.RandomState(0).standard_normal(shape, chunks=(1, 1, chunk, shape[3], shape[4]))
    data = (da.cumsum(steps.astype("float32"), axis=1) * da.from_array(scale)).astype("float16")
    xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), data)}).to_zarr(
        str(path), mode="w", zarr_format=3, encoding={"activations": {"compressors": None}})
    return path


def run(size: str = "small", device: str = "cpu") -> dict:
    n = SAMPLES[size]
    shape = (SHAPE[0], SHAPE[1], n, SHAPE[3], SHAPE[4])
    with tempfile.TemporaryDirectory() as tmp:
        store = write_residual_store(Path(tmp) / "cka.zarr", shape)
        tgo = run_child(CHILD, str(store), "tgo")
        numpy = run_child(CHILD, str(store), "numpy")
        minibatch = run_child(CHILD, str(store), "minibatch", str(BATCH))
    exact, in_memory, estimate = (np.array(r["matrix"]) for r in (tgo, numpy, minibatch))
    off = ~np.eye(exact.shape[0], dtype=bool)
    return {
        "store_shape": list(shape), "store_dtype": "float16", "store_mb": float(np.prod(shape)) * 2 / 1e6,
        "representation": "mean over tokens", "pairs": int(off.sum() // 2),
        "tgo_seconds": tgo["seconds"], "tgo_peak_rss_mb": tgo["peak_rss_mb"],
        "numpy_in_memory_seconds": numpy["seconds"], "numpy_in_memory_peak_rss_mb": numpy["peak_rss_mb"],
        "minibatch_hsic_seconds": minibatch["seconds"], "minibatch_hsic_peak_rss_mb": minibatch["peak_rss_mb"],
        "minibatch_batch": BATCH,
        "tgo_vs_numpy_max_abs_difference": float(np.abs(exact - in_memory).max()),
        "minibatch_vs_exact_max_abs_error": float(np.abs(estimate - exact)[off].max()),
        "minibatch_vs_exact_mean_abs_error": float(np.abs(estimate - exact)[off].mean()),
        "exact_offdiagonal_mean": float(exact[off].mean()),
        "note": "machine shared with other jobs (2 cores); numpy and minibatch load the checkpoint into RAM first",
    }


if __name__ == "__main__":
    size = sys.argv[1] if len(sys.argv) > 1 else "small"
    started = time.perf_counter()
    row = run(size)
    row["row_seconds"] = time.perf_counter() - started
    print(json.dumps(row, indent=1))
