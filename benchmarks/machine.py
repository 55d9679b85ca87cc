"""Row 1: the machine's own limits, measured in the same run as everything else."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.common import best_of


def gemm_gflops(dtype: Any, n: int = 1024) -> float:
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    seconds = best_of(lambda: a @ a, repeat=5)
    return 2 * n**3 / seconds / 1e9


def memcpy_gbs(megabytes: int = 256) -> float:
    src = np.ones(megabytes * 2**20 // 8)
    dst = np.empty_like(src)
    seconds = best_of(lambda: np.copyto(dst, src), repeat=5)
    return src.nbytes / seconds / 1e9


def disk_gbs(directory: str, megabytes: int = 256) -> tuple[float, float]:
    """Sequential write with fsync, then a read after dropping the file's pages (posix_fadvise)."""
    block = os.urandom(4 * 2**20)
    path = os.path.join(directory, "tgo-disk-probe.bin")
    start = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(megabytes // 4):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    write = megabytes * 2**20 / (time.perf_counter() - start) / 1e9
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    start = time.perf_counter()
    while os.read(fd, 16 * 2**20):
        pass
    read = megabytes * 2**20 / (time.perf_counter() - start) / 1e9
    os.close(fd)
    os.remove(path)
    return write, read


def cuda_limits() -> dict[str, float]:
    import torch

    if not torch.cuda.is_available():
        return {}
    out = {}
    for name, dtype in (("fp16", torch.float16), ("fp32", torch.float32)):
        a = torch.randn(8192, 8192, device="cuda", dtype=dtype)
        torch.cuda.synchronize()
        seconds = best_of(lambda a=a: (a @ a, torch.cuda.synchronize()), repeat=5)
        out[f"cuda_{name}_tflops"] = 2 * 8192**3 / seconds / 1e12
    host = torch.empty(2**28, dtype=torch.uint8, pin_memory=True)
    dev = torch.empty(2**28, dtype=torch.uint8, device="cuda")
    seconds = best_of(lambda: (host.copy_(dev, non_blocking=True), torch.cuda.synchronize()), repeat=5)
    out["cuda_pinned_d2h_gbs"] = 2**28 / seconds / 1e9
    return out


def run(size: str = "small", device: str = "cpu", directory: str | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        write, read = disk_gbs(tmp)
    out = {"sgemm_gflops": gemm_gflops(np.float32), "dgemm_gflops": gemm_gflops(np.float64),
           "memcpy_gbs": memcpy_gbs(), "disk_write_fsync_gbs": write, "disk_cold_read_gbs": read}
    if device == "cuda":
        out.update(cuda_limits())
    return out
