"""Row `integrity`: what the data checksums cost (issue 30), with and without zarr's crc32c codec
inside each shard, side by side in one run (interleaved repeats, best of each).

- shard writes: the store's layout (``choose_layout``), written block by block as ingest does;
- a full ingest (``tgo_store.ingest``: capture + writes) of the size's ViT on synthetic images;
- shard reads with the pipeline analysis uses (every layer slab of every block), and the
  engine's block read (``engine.blocks.read_block``: dask, the checksum and the NaN/Inf check);
- analyses of the two ingested stores: ``mean_norm`` (read-bound) and ``alpha`` (per-token covariance spectra);
- ``tgo verify`` (every committed block read and checked).

`python -m benchmarks.integrity [--size small]` writes benchmarks/results/integrity-<host>-<size>-<date>.json;
the machine's load average is recorded with it (timings on a shared machine are only comparable
side by side, within one run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from benchmarks.common import RESULTS, SIZES

REPEATS = 3  # full ingests and analyses
CHEAP_REPEATS = 7  # shard writes and reads, engine reads, verify: seconds each, and noisier
MODES = ("crc32c", "none")


def _checksums(mode: str) -> Any:
    import tgo_store.store.metadata as metadata

    return mock.patch.object(metadata, "DATA_CHECKSUMS", mode == "crc32c")


def _best(times: dict[str, list[float]]) -> dict[str, float]:
    return {mode: min(values) for mode, values in times.items()}


def _interleaved(run: Callable[[str, int], float], repeats: int = CHEAP_REPEATS) -> dict[str, float]:
    """Best time of each mode, the modes alternating so that load drifts hit both alike."""
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for repeat in range(repeats):
        for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
            times[mode].append(run(mode, repeat))
    return _best(times)


def shard_writes(root: Path, shape: tuple[int, ...]) -> tuple[dict[str, float], int]:
    """Seconds to write a (layers, samples, tokens, features) float16 array block by block."""
    import zarr

    from tgo_store.store.layout import choose_layout
    from tgo_store.store.metadata import data_compressors

    _, n_layer, n, t, d = shape
    layout = choose_layout(n, t, d, 2, 64)
    data = np.random.default_rng(0).standard_normal((n_layer, n, t, d), dtype=np.float32).astype(np.float16)

    def run(mode: str, repeat: int) -> float:
        with _checksums(mode):
            compressors = data_compressors()
        path = root / f"writes-{mode}-{repeat}.zarr"
        array = zarr.create_array(str(path), shape=(1, n_layer, n, t, d), chunks=layout.chunk_shape(d),
                                  shards=layout.shard_shape(d), dtype="float16", compressors=compressors,
                                  fill_value=0, config={"write_empty_chunks": True})
        start = time.perf_counter()
        for block in range(layout.n_blocks(n)):
            a, b = layout.block_range(block, n)
            array[0, :, a:b] = data[:, a:b]
        seconds = time.perf_counter() - start
        shutil.rmtree(path)
        return seconds

    return _interleaved(run), data.nbytes


def ingests(root: Path, size: str) -> tuple[dict[str, float], dict[str, Path], int]:
    """Seconds of a full ingest into a new store, and the stores of the last repeat."""
    import torch

    from tgo_store import ingest
    from tgo_store.capture.models import build_model

    cfg = SIZES[size]
    stores: dict[str, Path] = {}
    nbytes = [0]
    ckpt = root / "step_0.pth"
    torch.manual_seed(0)
    torch.save(build_model("vit_tiny_patch16_224", **cfg["vit"]).state_dict(), ckpt)

    def run(mode: str, repeat: int) -> float:
        store = root / f"ingest-{mode}.zarr"
        shutil.rmtree(store, ignore_errors=True)
        with _checksums(mode):
            start = time.perf_counter()
            summary = ingest(str(store), model_spec="vit_tiny_patch16_224", model_kwargs=dict(cfg["vit"]),
                             checkpoints=str(ckpt), data_spec=f"synthetic:{cfg['images']}", batch_size=64,
                             device="cpu", progress=False)
            seconds = time.perf_counter() - start
        stores[mode], nbytes[0] = store, summary.bytes
        return seconds

    return _interleaved(run, REPEATS), stores, nbytes[0]


def shard_reads(stores: dict[str, Path]) -> dict[str, float]:
    """Seconds to read every (layer, sample block) slab with the pipeline analysis opens it with
    (``fast_codecs``: zarrs without checksums, zarr's own with them)."""
    import zarr

    from tgo_store.store.location import fast_codecs, open_zarr_store

    def run(mode: str, _repeat: int) -> float:
        url = str(stores[mode])
        with fast_codecs(url):
            array = zarr.open_array(open_zarr_store(url, read_only=True), path="activations", mode="r")
        spb = array.shards[2]
        start = time.perf_counter()
        for c in range(array.shape[0]):
            for layer in range(array.shape[1]):
                for a in range(0, array.shape[2], spb):
                    array[c, layer, a:a + spb]
        return time.perf_counter() - start

    return _interleaved(run)


def engine_reads(stores: dict[str, Path]) -> dict[str, float]:
    """Seconds of the engine's block reads (dask, checksum, NaN/Inf check) over every unit of a store."""
    from tgo_analysis.engine.blocks import read_block
    from tgo_store import open_store

    def run(mode: str, _repeat: int) -> float:
        act = open_store(str(stores[mode])).activations.data
        start = time.perf_counter()
        for c in range(act.shape[0]):
            for layer in range(act.shape[1]):
                unit = act[c, layer]
                for i in range(unit.numblocks[0]):
                    read_block(unit, i)
        return time.perf_counter() - start

    return _interleaved(run)


def finite_check(stores: dict[str, Path]) -> float:
    """Seconds of the NaN/Inf check alone over the store's data (part of every checked read)."""
    from tgo_store import open_store
    from tgo_store.store.integrity import non_finite

    values = np.asarray(open_store(str(stores["crc32c"])).activations.values)
    start = time.perf_counter()
    for block in values.reshape(-1, *values.shape[3:]):
        non_finite(block)
    return time.perf_counter() - start


def analyses(stores: dict[str, Path], metric: str) -> dict[str, float]:
    """Seconds of `analyze(store, metric)`, results in memory: mean_norm is read-bound (the worst
    case for a read cost), alpha the per-token covariance spectra (token_spectra) of every default analysis."""
    from tgo_analysis.analyze import analyze
    from tgo_store import open_store

    def run(mode: str, _repeat: int) -> float:
        start = time.perf_counter()
        analyze(open_store(str(stores[mode])), metric, progress=False)
        return time.perf_counter() - start

    return _interleaved(run, REPEATS)


def verifies(stores: dict[str, Path]) -> dict[str, float]:
    """Seconds of `verify_store` (reads and checks every committed block)."""
    from tgo_store.store.verify import verify_store

    def run(mode: str, _repeat: int) -> float:
        start = time.perf_counter()
        assert verify_store(str(stores[mode])).ok
        return time.perf_counter() - start

    return _interleaved(run)


def _rates(seconds: dict[str, float], nbytes: int, name: str) -> dict[str, float]:
    out = {f"{name}_{mode}_mb_per_s": nbytes / 1e6 / s for mode, s in seconds.items()}
    out[f"{name}_crc32c_cost_percent"] = 100.0 * (seconds["crc32c"] / seconds["none"] - 1.0)
    return out


def run(size: str = "small", device: str = "cpu") -> dict[str, Any]:
    """Every measure with and without the checksum codec; costs as per cent of the time without."""
    with tempfile.TemporaryDirectory(prefix="tgo-integrity-bench-") as folder:
        root = Path(folder)
        result: dict[str, Any] = {"load_average_start": os.getloadavg()[0]}
        seconds, nbytes = shard_writes(root, SIZES[size]["store"])
        result.update(_rates(seconds, nbytes, "shard_write"))
        seconds, stores, nbytes = ingests(root, size)
        result.update(_rates(seconds, nbytes, "ingest"))
        result.update(_rates(shard_reads(stores), nbytes, "shard_read"))
        result.update(_rates(engine_reads(stores), nbytes, "engine_block_read"))
        result["finite_check_mb_per_s"] = nbytes / 1e6 / finite_check(stores)
        for metric in ("mean_norm", "alpha"):
            result.update(_rates(analyses(stores, metric), nbytes, f"analysis_{metric}"))
        result.update(_rates(verifies(stores), nbytes, "verify"))
        result["store_mb"] = nbytes / 1e6
        result["load_average_end"] = os.getloadavg()[0]
    return result


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.__main__ import host_kind

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=tuple(SIZES))
    parser.add_argument("--note", default="", help="recorded with the result (e.g. the machine's state)")
    args = parser.parse_args(argv)
    result = {"row": "integrity", "size": args.size, "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
              "repeats": {"ingest_and_analysis": REPEATS, "others": CHEAP_REPEATS}, "note": args.note, "values": run(args.size)}
    path = RESULTS / f"integrity-{host_kind('cpu')}-{args.size}-{result['date']}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
