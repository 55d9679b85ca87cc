"""Cluster rows (issue 23): a unit split across `dask worker` processes pinned one per core.

1. One ViT-S/8-shaped unit (1024 x 785 x 384, float16, tgo's sharded layout with 4 inner token
   chunks) on 2 workers pinned with ``taskset -c 0`` / ``-c 1``, against the threaded path pinned
   to one core: the speed-up, net of start-up (workers started before the clock).
2. A 13-layer checkpoint on the same 2 workers against the threaded path on both cores.
The tangent row of issue 23 (the client's serial time before a unit's first task) ran here until
stop 38, but both of its arms imported this checkout (a ``python -c`` child imports the package of
its working directory before ``PYTHONPATH``, and the pinned workers run this tree): it now lives in
``benchmarks/tangent_trees.py``, which runs each tree from its own folder on its own cluster.

The workers run one analysis before the clock (start-up: their first imports). Other processes
may load the machine: rows are run interleaved, ``REPEATS`` times, medians kept.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPEATS = 3
SPECTRA = "eigenvalues,alpha,effective_rank,stable_rank,participation_ratio,spectral_flatness,top1_share"
ANALYZE = """
import json, sys, time
import tgo_analysis, tgo_store
ds = tgo_store.open_store(sys.argv[1])
extra = json.loads(sys.argv[3])
start = time.perf_counter()
res = tgo_analysis.analyze(ds, sys.argv[2], fit_range=(2, 40), progress=False, **extra)
print(json.dumps({"seconds": time.perf_counter() - start, "plan": res.attrs.get("cluster_plan")}, default=str))
"""

def write_vit_store(path: Path, shape: tuple[int, ...], token_chunks: int, samples: int = 64) -> Path:
    """float16 activations in tgo's layout: a shard per (layer, sample block), inner chunks splitting tokens."""
    import dask.array as da
    import xarray as xr

    *_, t, d = shape
    per_chunk = -(-t // token_chunks)
    scale = np.arange(1, d + 1, dtype=np.float32) ** -0.5
    data = (da.random.RandomState(0).standard_normal(shape, chunks=(1, 1, samples, t, d)) * scale).astype("float16")
    dims = ("checkpoint", "layer", "sample", "token", "feature")
    encoding = {"activations": {"compressors": None, "chunks": (1, 1, samples, per_chunk, d),
                                "shards": (1, 1, samples, per_chunk * token_chunks, d)}}
    xr.Dataset({"activations": (dims, data)}).to_zarr(str(path), mode="w", zarr_format=3, encoding=encoding)
    return path


def write_gradient_store(path: Path, n_layers: int = 4, n: int = 4000, t: int = 8, d: int = 256) -> Path:
    """Low-rank activations (the semi-NMF subsample) and random float16 gradients, as tests/gradients does."""
    import dask.array as da
    import xarray as xr

    rng = np.random.default_rng(0)
    patterns = np.abs(rng.standard_normal((3, t, d))).astype(np.float16)
    codes = da.from_array(np.arange(n) % 7, chunks=1000)
    acts = sum((codes + j)[:, None, None] % 5 * patterns[j] for j in range(3)).astype(np.float16)
    acts = da.stack([acts] * n_layers)[None]
    grads = da.random.RandomState(1).standard_normal((1, n_layers, n, t, d), chunks=(1, 1, 1000, t, d))
    dims = ("checkpoint", "layer", "sample", "token", "feature")
    ds = xr.Dataset({"activations": (dims, acts), "gradients": (dims, grads.astype(np.float16))})
    ds.chunk({"layer": 1, "sample": 1000}).to_zarr(str(path), mode="w", zarr_format=3)
    return path


class PinnedCluster:
    """A `dask scheduler` and one single-threaded `dask worker` per core, each pinned with taskset."""

    def __init__(self, root: Path, cores: tuple[int, ...] = (0, 1), memory_limit: str = "3GB"):
        self.root, self.cores, self.memory_limit, self.procs = root, cores, memory_limit, []

    def __enter__(self) -> str:
        info = self.root / "scheduler.json"
        dask = os.path.join(os.path.dirname(sys.executable), "dask")
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.procs.append(subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                            "--scheduler-file", str(info)], **quiet))
        while not (info.exists() and info.stat().st_size):
            time.sleep(0.05)
        self.address = json.loads(info.read_text())["address"]
        for core in self.cores:
            self.procs.append(subprocess.Popen(["taskset", "-c", str(core), dask, "worker", self.address,
                                                "--nthreads", "1", "--memory-limit", self.memory_limit,
                                                "--no-dashboard"], env=_env(), **quiet))
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(len(self.cores), timeout=120)
        return self.address

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            proc.wait(timeout=60)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _child(code: str, *args: str, pin: str | None = None) -> dict:
    command = [sys.executable, "-c", code, *args]
    done = subprocess.run((["taskset", "-c", pin] if pin else []) + command, capture_output=True, text=True,
                          env=_env())
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "child failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _in_process(url: Path, metrics: str, address: str) -> dict:
    """The cluster side runs from this process (already imported): its clock starts at analyze()."""
    import tgo_analysis
    import tgo_store

    ds = tgo_store.open_store(str(url))
    start = time.perf_counter()
    res = tgo_analysis.analyze(ds, metrics, fit_range=(2, 40), progress=False, scheduler=address)
    return {"seconds": time.perf_counter() - start, "plan": res.attrs.get("cluster_plan")}


def run(size: str = "small", device: str = "cpu", partial: str | None = None) -> dict:
    if len(os.sched_getaffinity(0)) < 2:
        return {"skipped": "needs 2 cores to pin 2 workers"}
    unit_shape = {"tiny": (1, 1, 256, 65, 96), "small": (1, 1, 1024, 785, 384)}.get(size, (1, 1, 1024, 785, 384))
    layers_shape = {"tiny": (1, 13, 128, 17, 64), "small": (1, 13, 512, 197, 192)}.get(size, (1, 13, 1024, 197, 384))
    out: dict = {"unit_shape": list(unit_shape), "layers_shape": list(layers_shape), "repeats": REPEATS,
                 "load_average_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        unit = write_vit_store(root / "unit.zarr", unit_shape, token_chunks=4)
        layers = write_vit_store(root / "layers.zarr", layers_shape, token_chunks=1)
        rows: dict[str, list] = {k: [] for k in ("one_core", "two_workers", "layers_threaded", "layers_two_workers")}
        out["runs"] = rows
        with PinnedCluster(root) as address:
            _in_process(layers, SPECTRA, address)  # warm-up: the workers import tgo, xarray and zarr once
            for _ in range(REPEATS):  # interleaved: a load spike hits both sides of a ratio
                rows["one_core"].append(_child(ANALYZE, str(unit), SPECTRA, "{}", pin="0")["seconds"])
                two = _in_process(unit, SPECTRA, address)
                rows["two_workers"].append(two["seconds"])
                out["unit_plan"] = two["plan"]
                rows["layers_threaded"].append(_child(ANALYZE, str(layers), SPECTRA, "{}", pin="0,1")["seconds"])
                rows["layers_two_workers"].append(_in_process(layers, SPECTRA, address)["seconds"])
                if partial:  # what is measured so far survives an interrupted run
                    Path(partial).write_text(json.dumps(out, indent=1, default=str))
    med = {k: _median(v) for k, v in rows.items()}
    out.update({f"{k}_seconds": v for k, v in med.items()})
    out["unit_speedup_two_pinned_workers_vs_one_core"] = med["one_core"] / med["two_workers"]
    out["layers_speedup_two_workers_vs_threaded"] = med["layers_threaded"] / med["layers_two_workers"]
    out["load_average_end"] = os.getloadavg()[0]
    return out


if __name__ == "__main__":
    # python -m benchmarks.cluster [size] [results JSON]
    target = sys.argv[2] if len(sys.argv) > 2 else None
    result = run(sys.argv[1] if len(sys.argv) > 1 else "small", partial=target)
    result["date"] = time.strftime("%Y-%m-%d")
    text = json.dumps(result, indent=1, default=str)
    if target:
        Path(target).write_text(text)
    print(text)
