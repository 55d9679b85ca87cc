"""Row 3: covariance spectra of every (layer, token): tgo vs numpy in memory vs scikit-learn's
IncrementalPCA vs the machine's roofline (SGEMM for the co-moments + batched eigvalsh)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import SIZES, run_child, write_store
from benchmarks.machine import gemm_gflops

SPECTRA = "eigenvalues,alpha,effective_rank,stable_rank,participation_ratio,spectral_entropy,spectral_flatness,top1_share"
# tgo in a fresh process: argv = store, metrics[, JSON of extra analyze() keywords]
TGO = """
import json, sys, time
import tgo_analysis
import tgo_store
ds = tgo_store.open_store(sys.argv[1])  # as `tgo analyze` opens it
extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
start = time.perf_counter()
tgo_analysis.analyze(ds, sys.argv[2], fit_range=(2, 40), all_tokens="off", progress=False, **extra)
seconds = time.perf_counter() - start
# VmHWM, not getrusage: Linux carries ru_maxrss over from the parent across fork + exec
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "peak_rss_mb": int(hwm.split()[1]) / 1024}))
"""
IPCA_TOKENS = 4


def numpy_in_memory(x: np.ndarray) -> float:
    """Per (layer, token): np.cov + eigvalsh on data already in RAM."""
    start = time.perf_counter()
    for layer in range(x.shape[0]):
        for token in range(x.shape[2]):
            np.linalg.eigvalsh(np.cov(x[layer, :, token], rowvar=False))
    return time.perf_counter() - start


def incremental_pca(x: np.ndarray, batch: int = 256) -> float:
    """IncrementalPCA over every sample in batches, on a few tokens, scaled to all (layer, token).

    Every batch needs at least n_components = D samples: the samples are split into
    n // max(batch, D) equal batches (1024 x 384 features: two batches of 512).
    """
    from sklearn.decomposition import IncrementalPCA

    n_batches = max(1, x.shape[1] // max(batch, x.shape[-1]))
    start = time.perf_counter()
    for token in range(IPCA_TOKENS):
        model = IncrementalPCA(n_components=x.shape[-1])
        for part in np.array_split(x[0, :, token], n_batches):
            model.partial_fit(part)
    per_token = (time.perf_counter() - start) / IPCA_TOKENS
    return per_token * x.shape[0] * x.shape[2]


def token_covariances(x: np.ndarray) -> np.ndarray:
    """(T, D, D) covariances of the first layer's tokens: real spectra for the eigvalsh floors."""
    return np.stack([np.cov(x[0, :, tok], rowvar=False) for tok in range(x.shape[2])])


def roofline(x: np.ndarray, covs: np.ndarray, sgemm: float, dgemm: float) -> dict[str, float]:
    """The floor: co-moment GEMM FLOPs at the measured GEMM rate, plus batched eigvalsh timed on
    this data's own covariance matrices (eigvalsh on a near-identity matrix runs ~1.5x faster
    than on a real spectrum, so a synthetic matrix would flatter the floor).

    Two floors: SGEMM (the machine's fastest GEMM) and DGEMM (float64, what SPEC section 3
    asks of the co-moments and what numpy's np.cov does too).
    """
    n_layer, n, t, d = x.shape
    flops = 2.0 * n_layer * t * n * d * d
    covs = np.concatenate([covs] * n_layer)
    start = time.perf_counter()
    np.linalg.eigvalsh(covs)
    eig = time.perf_counter() - start
    return {"gemm_seconds": flops / (sgemm * 1e9), "eigvalsh_seconds": eig,
            "seconds": flops / (sgemm * 1e9) + eig, "float64_seconds": flops / (dgemm * 1e9) + eig}


def cuda_roofline(x: np.ndarray, covs: np.ndarray) -> dict[str, float]:
    """The GPU's own floor: co-moment FLOPs at its measured float64 matmul rate (what the device
    path runs) plus batched eigvalsh of this data's covariances on the device."""
    import torch

    n_layer, n, t, d = x.shape
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float64)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    tflops = 3 * 2 * 8192**3 / (time.perf_counter() - start) / 1e12
    covs = torch.from_numpy(covs).cuda()
    torch.linalg.eigvalsh(covs[:2])
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n_layer):
        torch.linalg.eigvalsh(covs)
    torch.cuda.synchronize()
    eig = time.perf_counter() - start
    gemm = 2.0 * n_layer * t * n * d * d / (tflops * 1e12)
    return {"cuda_fp64_tflops": tflops, "cuda_roofline_gemm_seconds": gemm, "cuda_roofline_eigvalsh_seconds": eig,
            "cuda_roofline_seconds": gemm + eig}


def run(size: str = "small", device: str = "cpu") -> dict[str, float]:
    import xarray as xr

    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return {"skipped": "no CUDA device on this machine"}
    shape = SIZES[size]["analysis"]
    with tempfile.TemporaryDirectory() as tmp:
        store = write_store(Path(tmp) / "bench.zarr", shape)
        tgo = run_child(TGO, str(store), SPECTRA)
        x = xr.open_zarr(store).activations.isel(checkpoint=0).values
        sgemm, dgemm = gemm_gflops(np.float32), gemm_gflops(np.float64)
        covs = token_covariances(x)
        floor = roofline(x, covs, sgemm, dgemm)
        numpy_s = numpy_in_memory(x)
        ipca_s = incremental_pca(x)
        out = {
            "store_shape": list(shape), "store_mb": float(np.prod(shape)) * 4 / 1e6,
            "tgo_seconds": tgo["seconds"], "tgo_peak_rss_mb": tgo["peak_rss_mb"],
            "numpy_in_memory_seconds": numpy_s, "incremental_pca_seconds_extrapolated": ipca_s,
            "roofline_seconds": floor["seconds"], "roofline_gemm_seconds": floor["gemm_seconds"],
            "roofline_eigvalsh_seconds": floor["eigvalsh_seconds"], "sgemm_gflops": sgemm, "dgemm_gflops": dgemm,
            "roofline_float64_seconds": floor["float64_seconds"],
            "tgo_fraction_of_roofline": floor["seconds"] / tgo["seconds"],
            "tgo_fraction_of_float64_roofline": floor["float64_seconds"] / tgo["seconds"],
            "tgo_speedup_vs_incremental_pca": ipca_s / tgo["seconds"],
            "tgo_time_vs_numpy_in_memory": tgo["seconds"] / numpy_s,
        }
        if device == "cuda":
            gpu = run_child(TGO, str(store), SPECTRA, json.dumps({"device": "cuda"}))
            gpu_floor = cuda_roofline(x, covs)
            out.update(gpu_floor)
            out.update({"tgo_cuda_seconds": gpu["seconds"],
                        "tgo_cuda_fraction_of_cuda_roofline": gpu_floor["cuda_roofline_seconds"] / gpu["seconds"],
                        "tgo_cuda_speedup_over_tgo_cpu": tgo["seconds"] / gpu["seconds"]})
    return out


if __name__ == "__main__":
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "small"), indent=1))
