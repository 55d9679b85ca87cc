"""Row 2: forward-only vs forward with every intermediate vs full ingest (capture + store),
and the store's write rate against the raw disk write rate of the same folder."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.common import SIZES
from benchmarks.machine import disk_gbs

MODEL = "vit_tiny_patch16_224"


def run(size: str = "small", device: str = "cpu") -> dict[str, float]:
    import torch

    from tgo_store.capture import make_capturer
    from tgo_store.ingest import ingest
    from tgo_store.models import build_model

    if device == "cuda" and not torch.cuda.is_available():
        return {"skipped": "no CUDA device on this machine"}
    cfg = SIZES[size]
    kwargs = {**cfg["vit"], "in_chans": 1, "num_classes": 10}
    n_images = cfg["images"]
    model = build_model(MODEL, **kwargs).eval().to(device)
    x = torch.randn(64, 1, kwargs["img_size"], kwargs["img_size"], device=device)
    capturer = make_capturer(model)
    batches = max(1, n_images // 64)

    def forward() -> None:
        with torch.inference_mode():
            for _ in range(batches):
                model(x)

    def intermediates() -> None:
        for _ in range(batches):
            capturer(x).to("cpu", torch.float16)

    def inflight() -> None:
        from tgo_analysis.inflight import InflightMoments

        acc = InflightMoments(model)
        for _ in range(batches):
            acc.update(x)
        acc.result()

    forward()
    start = time.perf_counter()
    forward()
    forward_s = time.perf_counter() - start
    start = time.perf_counter()
    inflight()
    inflight_s = time.perf_counter() - start
    start = time.perf_counter()
    intermediates()
    inter_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "step_0.pth"
        torch.save(model.state_dict(), ckpt)
        summary = ingest(str(Path(tmp) / "s.zarr"), model_spec=MODEL, model_kwargs=kwargs, checkpoints=str(ckpt),
                         data_spec=f"synthetic:{batches * 64}", batch_size=64, device=device, progress=False)
        disk_write, _ = disk_gbs(tmp)
    images = batches * 64
    return {
        "images": images, "forward_img_s": images / forward_s, "intermediates_img_s": images / inter_s,
        "inflight_comoments_img_s": images / inflight_s, "inflight_fraction_of_forward": forward_s / inflight_s,
        "ingest_img_s": summary.samples_per_second, "ingest_fraction_of_forward": summary.samples_per_second * forward_s / images,
        "store_write_gbs": summary.bytes / summary.seconds / 1e9, "disk_write_fsync_gbs": disk_write,
        "activation_mb_per_image": summary.bytes / images / 1e6,
    }
