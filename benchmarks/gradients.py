"""Row: the cost of gradients (issue 12): forward-only vs forward+store (``tgo ingest``) vs
forward+backward+store (``tgo ingest --gradients``), same model, inputs and store layout.

CPU: the `small` ViT of SIZES with 10 classes on labelled synthetic images, float32 compute,
float16 storage. CUDA (when present): ViT-S/16 at 224 px, float32 compute (the backward of a
float16 forward is not what a training loop records). Runs are interleaved (this machine's
speed drifts by 10-30 %) and the median is reported.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import SIZES

CPU_MODEL = "vit_tiny_patch16_224"
CUDA_MODEL = "vit_small_patch16_224"
BATCH = 64
REPEATS = 3


def measure(spec: str, kwargs: dict, n_images: int, device: str) -> dict[str, Any]:
    import torch

    from tgo_store.capture.models import build_model, input_config
    from tgo_store.ingestion import ingest

    model = build_model(spec, **kwargs).eval().to(device)
    cfg = input_config(model)
    x = torch.randn(BATCH, cfg["in_chans"], cfg["image_size"], cfg["image_size"], device=device)
    batches = max(1, n_images // BATCH)
    images = batches * BATCH
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def forward() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for _ in range(batches):
                model(x)
        sync()
        return time.perf_counter() - start

    forward()
    runs: dict[str, list[float]] = {"forward": [], "forward_store": [], "forward_backward_store": []}
    mb: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "step_0.pth"
        torch.save(model.state_dict(), ckpt)
        for index in range(REPEATS):
            runs["forward"].append(forward())
            for key, gradients in (("forward_store", False), ("forward_backward_store", True)):
                summary = ingest(str(Path(tmp) / f"{key}{index}.zarr"), model_spec=spec, model_kwargs=kwargs,
                                 checkpoints=str(ckpt), data_spec=f"synthetic:{images}", batch_size=BATCH,
                                 device=device, progress=False, gradients=gradients)
                runs[key].append(summary.seconds)
                mb[key] = summary.bytes / images / 1e6
    median = {k: statistics.median(v) for k, v in runs.items()}
    out: dict[str, Any] = {"images": images, "device": device, "model": spec}
    for key, seconds in median.items():
        out[f"{key}_img_s"] = images / seconds
        out[f"{key}_img_s_runs"] = [round(images / s, 1) for s in runs[key]]
    out["store_fraction_of_forward"] = median["forward"] / median["forward_store"]
    out["gradients_fraction_of_forward"] = median["forward"] / median["forward_backward_store"]
    out["gradients_cost_vs_store"] = median["forward_backward_store"] / median["forward_store"]
    out["stored_mb_per_image"] = mb["forward_store"]
    out["stored_mb_per_image_with_gradients"] = mb["forward_backward_store"]
    return out


def run(size: str = "small", device: str = "cpu") -> dict[str, Any]:
    import torch

    if device == "cuda":
        if not torch.cuda.is_available():
            return {"skipped": "no CUDA device on this machine"}
        return measure(CUDA_MODEL, {"num_classes": 10}, min(SIZES[size]["images"], 1024), "cuda")
    return measure(CPU_MODEL, {**SIZES[size]["vit"], "num_classes": 10}, SIZES[size]["images"], "cpu")
