"""Store layout: write speed and the two read patterns for candidate chunk/shard shapes, with
zarr-python's default codec pipeline and the `zarrs` (Rust) pipeline, compressed or not.

Read patterns: a "layer slab" (all tokens of one layer for a block of samples: what analysis
reads) and a "token slab" (one token across every layer for all samples).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import SIZES


# name -> (chunk shape, shard shape or None) for an array (checkpoint, layer, sample, token, feature)
def candidates(n_layer: int, n: int, n_tok: int, d: int) -> dict[str, tuple[tuple, tuple | None]]:
    from tgo_store.store.layout import choose_layout

    tgo = choose_layout(n, n_tok, d, 2, 64)  # what `tgo ingest` picks for this shape, batch 64
    block = tgo.samples_per_block
    split = -(-n_tok // 4)
    return {
        "shard (layer, block) as tgo lays it out [tgo]": (tgo.chunk_shape(d), tgo.shard_shape(d)),
        "shard (layer, block), 4 inner chunks along tokens": ((1, 1, block, split, d), (1, 1, block, 4 * split, d)),
        "chunk (layer, block), no shards": ((1, 1, block, n_tok, d), None),
        "chunk (all layers, block), no shards": ((1, n_layer, block, n_tok, d), None),
    }


def _time_layout(path: Path, data: np.ndarray, chunks: tuple, shards: tuple | None, pipeline: str,
                 compress: bool) -> dict[str, float]:
    import zarr
    from zarr.codecs import BloscCodec

    config = {"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"} if pipeline == "zarrs" else {}
    with zarr.config.set(config):
        # whole shards are written, as tgo writes them: no scan for chunks equal to the fill value
        array = zarr.create_array(str(path), shape=data.shape, chunks=chunks, shards=shards, dtype=data.dtype,
                                  compressors=[BloscCodec(cname="zstd", clevel=1)] if compress else None,
                                  zarr_format=3, overwrite=True, config={"write_empty_chunks": True})
        start, cpu_start = time.perf_counter(), time.process_time()
        block = chunks[2]
        for lo in range(0, data.shape[2], block):
            array[:, :, lo:lo + block] = data[:, :, lo:lo + block]
        write, write_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        start = time.perf_counter()
        array[0, data.shape[1] // 2, :block]
        layer_read = time.perf_counter() - start
        start = time.perf_counter()
        array[0, :, :, 0]
        token_read = time.perf_counter() - start
    stored = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return {"write_gbs": data.nbytes / write / 1e9, "write_cpu_s_per_gb": write_cpu / (data.nbytes / 1e9),
            "layer_slab_s": layer_read, "token_slab_s": token_read,
            "compression_ratio": data.nbytes / stored}


# the demo-sized store of the suite, and two layers of a ViT-S/8 (785 tokens x 384) over 256 images
SHAPES = {"small": lambda size: SIZES[size]["store"], "vit_s8": lambda size: (1, 2, 256, 785, 384)}


def run(size: str = "small", device: str = "cpu") -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(0)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, shape_of in SHAPES.items():
            _, n_layer, n, t, d = shape_of(size)
            data = (rng.standard_normal((1, n_layer, n, t, d)) * 3).astype(np.float16)  # activation-like fp16
            for name, (chunks, shards) in candidates(n_layer, n, t, d).items():
                for pipeline in ("default", "zarrs"):
                    for compress in (False, True) if label == "small" else (False,):
                        key = f"{label} | {name} | {pipeline} | {'zstd' if compress else 'raw'}"
                        path = Path(tmp) / "layout.zarr"
                        out[key] = _time_layout(path, data, chunks, shards, pipeline, compress)
                        shutil.rmtree(path)
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "small"), indent=1))
