"""Row 2: forward-only vs forward with every intermediate vs in-flight co-moments vs full ingest
(capture + store), and the store's write rate against the raw disk write rate of the same folder.

On the CPU: the `small` ViT of SIZES (the demo's size: 0.12 MB of activations per image, the
worst case for storage overhead) and ViT-S/16 at 224 px, float32. On CUDA: ViT-S/8 and ViT-B/8 at 224 px (785
tokens, random init), float16 compute, batch 64, as the benchmark issue asks.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import SIZES
from benchmarks.machine import disk_gbs

CPU_MODEL = "vit_tiny_patch16_224"
CPU_REAL_MODEL = "vit_small_patch16_224"
CUDA_MODELS = {"vit_s8": "vit_small_patch8_224", "vit_b8": "vit_base_patch8_224"}
BATCH = 64
REPEATS = 3


def _timed(func: Any, sync: Any) -> float:
    start = time.perf_counter()
    func()
    sync()
    return time.perf_counter() - start


def measure(spec: str, kwargs: dict, n_images: int, device: str, precision: str) -> dict[str, float]:
    """Every rate for one model, side by side on the same inputs."""
    import torch

    from benchmarks.inflight import InflightMoments
    from tgo_store.capture.models import build_model, input_config
    from tgo_store.capturers import make_capturer
    from tgo_store.ingestion import ingest

    dtype = getattr(torch, precision)
    model = build_model(spec, **kwargs).eval().to(device, dtype)
    cfg = input_config(model)
    x = torch.randn(BATCH, cfg["in_chans"], cfg["image_size"], cfg["image_size"], device=device, dtype=dtype)
    capturer = make_capturer(model)
    batches = max(1, n_images // BATCH)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def forward() -> None:
        with torch.inference_mode():
            for _ in range(batches):
                model(x)

    def intermediates() -> None:  # every layer and token, cast and copied to the host
        for _ in range(batches):
            capturer(x).to("cpu", torch.float16)

    def inflight() -> None:
        acc = InflightMoments(model)
        for _ in range(batches):
            acc.update(x)
        acc.result()

    forward()
    sync()
    inter_s = _timed(intermediates, sync)
    inflight_s = _timed(inflight, sync)
    images = batches * BATCH
    forward_runs, ingest_runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "step_0.pth"
        torch.save(build_model(spec, **kwargs).state_dict(), ckpt)
        for run_index in range(REPEATS):  # interleaved: this machine's speed drifts by 10-30 %
            forward_runs.append(_timed(forward, sync))
            store = Path(tmp) / f"s{run_index}.zarr"
            summary = ingest(str(store), model_spec=spec, model_kwargs=kwargs, checkpoints=str(ckpt),
                             data_spec=f"synthetic:{images}", batch_size=BATCH, device=device, progress=False,
                             precision=precision)
            ingest_runs.append(summary)
            shutil.rmtree(store)  # a ViT-B/8 store is 16 MB per image
        disk_write, _ = disk_gbs(tmp, megabytes=1024 if device == "cuda" else 256)
    forward_s = statistics.median(forward_runs)
    summary = sorted(ingest_runs, key=lambda s: s.seconds)[len(ingest_runs) // 2]
    store_gbs = summary.bytes / summary.seconds / 1e9
    return {
        "images": images, "forward_img_s": images / forward_s, "intermediates_img_s": images / inter_s,
        "inflight_comoments_img_s": images / inflight_s, "inflight_fraction_of_forward": forward_s / inflight_s,
        "ingest_img_s": summary.samples_per_second,
        "ingest_fraction_of_forward": summary.samples_per_second * forward_s / images,
        "storage_overhead_fraction": 1 - summary.samples_per_second * forward_s / images,
        "store_write_gbs": store_gbs, "disk_write_fsync_gbs": disk_write,
        "store_write_fraction_of_disk": store_gbs / disk_write,
        "activation_mb_per_image": summary.bytes / images / 1e6,
        "forward_img_s_runs": [round(images / f, 1) for f in forward_runs],
        "ingest_img_s_runs": [round(s.samples_per_second, 1) for s in ingest_runs],
    }


def run(size: str = "small", device: str = "cpu") -> dict[str, Any]:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        return {"skipped": "no CUDA device on this machine"}
    n_images = SIZES[size]["images"]
    if device == "cpu":
        kwargs = {**SIZES[size]["vit"], "in_chans": 1, "num_classes": 10}
        out = measure(CPU_MODEL, kwargs, n_images, "cpu", "float32")
        if size != "tiny":  # a real ViT: 4.6 GFLOP and 2 MB of activations per image
            for key, value in measure(CPU_REAL_MODEL, {}, 3 * BATCH, "cpu", "float32").items():
                out[f"vit_s16_{key}"] = value
        return out
    out: dict[str, Any] = {}
    for label, spec in CUDA_MODELS.items():
        for key, value in measure(spec, {}, min(n_images, 1024), "cuda", "float16").items():
            out[f"{label}_{key}"] = value
    return out
