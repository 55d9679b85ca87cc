"""`python -m benchmarks.block_reads OLD NEW [--store PATH] [--rounds 2]`: the engine's block reads
against zarr reading the same slabs alone, in two tgo trees side by side (issue 28: block reads at
least 0.8x zarr's read rate).

One float16 store in tgo's layout (the ``small`` ViT of benchmarks.common on synthetic images,
ingested by the tree this module is in unless ``--store`` names one). Each tree, in a child process
with ``PYTHONPATH`` set to it, reads every sample block of every (checkpoint, layer) unit twice,
alternating: with ``zarr.open_array(...)[c, layer, a:b]`` alone and through the tree's own read path
as production runs it: ``read_chunk`` on the ``fed`` ``unit_source`` the engine builds (what the
graph's read tasks call), or, in trees before the one graph builder (no ``read_chunk``), iterating
``read_blocks`` over the ``unit_source`` (their fold's read loop, with its prefetch thread). Best of
``--repeats`` each. The trees alternate ``--rounds`` times so that load drifts hit both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import SIZES, write_json

CHILD = """
import json, sys, time
import zarr
import tgo_store
from tgo_analysis.engine import blocks
from tgo_analysis.engine.units import unit_source
url, repeats = sys.argv[1], int(sys.argv[2])
ds = tgo_store.open_store(url)
act = ds.activations
raw = zarr.open_array(url, path="activations", mode="r")
bounds = [0]
for size in act.data.chunks[2]:
    bounds.append(bounds[-1] + size)
def zarr_alone():
    for c in range(act.shape[0]):
        for layer in range(act.shape[1]):
            for a, b in zip(bounds[:-1], bounds[1:]):
                raw[c, layer, a:b]
if hasattr(blocks, "read_chunk"):  # the graph's read tasks: engine.graph._read -> blocks.read_chunk
    path = "read_chunk"
    def engine():
        for c in range(act.shape[0]):
            for layer in range(act.shape[1]):
                source = blocks.fed(unit_source(ds, act, c, layer, []))
                for i in range(blocks.chunk_count(source)):
                    blocks.read_chunk(source, i)
else:  # before the one graph builder: the fold's read loop
    path = "read_blocks"
    def engine():
        for c in range(act.shape[0]):
            for layer in range(act.shape[1]):
                for _ in blocks.read_blocks(unit_source(ds, act, c, layer, [])):
                    pass
times = {"zarr_alone": [], "engine": []}
for r in range(repeats):
    for name, fn in ((("zarr_alone", zarr_alone), ("engine", engine)) if r % 2 == 0
                     else (("engine", engine), ("zarr_alone", zarr_alone))):
        start = time.perf_counter()
        fn()
        times[name].append(time.perf_counter() - start)
print(json.dumps({"times": times, "nbytes": int(act.nbytes), "blocks_per_unit": len(bounds) - 1,
                  "engine_path": path}))
"""


def make_store(path: Path, size: str = "small") -> Path:
    """The row's store: the size's ViT (random weights, seed 0) on synthetic images, ingested by this tree."""
    import torch

    from tgo_store import ingest
    from tgo_store.capture.models import build_model

    cfg = SIZES[size]
    torch.manual_seed(0)
    model = build_model("vit_tiny_patch16_224", **cfg["vit"])
    ckpt = path.parent / "block-reads-model.pth"
    torch.save(model.state_dict(), ckpt)
    ingest(str(path), model_spec="vit_tiny_patch16_224", model_kwargs=dict(cfg["vit"]), checkpoints=str(ckpt),
           data_spec=f"synthetic:{cfg['images']}", batch_size=64, device="cpu", progress=False)
    return path


def measure(root: Path, store: Path, repeats: int) -> dict[str, Any]:
    """One tree's best seconds for zarr alone and for the engine's reads, and the rates (MB/s)."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(store), str(repeats)], cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    best = {name: min(values) for name, values in result["times"].items()}
    mb = result["nbytes"] / 1e6
    return {**result, "zarr_alone_mb_per_s": mb / best["zarr_alone"], "engine_mb_per_s": mb / best["engine"],
            "engine_over_zarr_rate": best["zarr_alone"] / best["engine"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--store", type=Path, default=None, help="a float16 activation store (default: ingest one)")
    parser.add_argument("--size", default="small")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tgo-block-reads-") as tmp:
        store = args.store or make_store(Path(tmp) / "store.zarr", args.size)
        out: dict[str, Any] = {"store": str(store), "date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count(),
                               "load_before_1min": os.getloadavg()[0], "rounds": {"old": [], "new": []}}
        for _ in range(args.rounds):
            for tag, root in (("old", args.old.resolve()), ("new", args.new.resolve())):
                out["rounds"][tag].append(measure(root, store, args.repeats))
                print(tag, {k: round(v, 3) for k, v in out["rounds"][tag][-1].items() if isinstance(v, float)},
                      flush=True)
        out["load_after_1min"] = os.getloadavg()[0]
    for tag, rounds in out["rounds"].items():
        out[f"{tag}_engine_over_zarr_rate"] = max(r["engine_over_zarr_rate"] for r in rounds)
        out[f"{tag}_engine_mb_per_s"] = max(r["engine_mb_per_s"] for r in rounds)
        out[f"{tag}_zarr_alone_mb_per_s"] = max(r["zarr_alone_mb_per_s"] for r in rounds)
    if args.out:
        write_json(args.out, out)
    print(json.dumps({k: v for k, v in out.items() if k != "rounds"}, indent=1))
    return out


if __name__ == "__main__":
    main()
