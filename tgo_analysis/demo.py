"""The embedded default, end to end and offline: train -> checkpoints -> ingest -> analyze -> report.

A small timm ViT (img 32, patch 4, depth 6, dim 128: 65 tokens with CLS) learns scikit-learn's
bundled handwritten digits; checkpoints at log-spaced steps (0 = initialisation) are recorded
on the held-out digits through the same ingest code as ``tgo ingest``, analysed with Dask and
reported. Every stage resumes: re-running skips what is already on disk.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEMO_MODEL = "vit_tiny_patch16_224"
DEMO_MODEL_KWARGS = {"img_size": 32, "patch_size": 4, "embed_dim": 128, "depth": 6, "num_heads": 4,
                     "in_chans": 1, "num_classes": 10}
TRAIN_DATA, TEST_DATA = "sklearn:digits:train", "sklearn:digits:test"


@dataclass(frozen=True)
class DemoConfig:
    train_steps: int = 600
    n_checkpoints: int = 7
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    model_kwargs: dict = field(default_factory=lambda: dict(DEMO_MODEL_KWARGS))

    @classmethod
    def quick(cls) -> DemoConfig:
        return cls(train_steps=40, n_checkpoints=3)


@dataclass
class DemoSummary:
    out_dir: Path
    store: str
    results: str
    report: Path
    accuracy: dict[int, float]
    seconds: dict[str, float]


def _train_if_needed(cfg: DemoConfig, ckpt_dir: Path, progress: bool) -> dict[int, float]:
    """Train unless every planned checkpoint is already there (resume = skip)."""
    from tgo_analysis.training import checkpoint_path, log_spaced_steps, train
    from tgo_store.models import build_model, input_config
    from tgo_store.sources import open_source

    steps = log_spaced_steps(cfg.train_steps, cfg.n_checkpoints)
    log_file = ckpt_dir / "training.json"
    if log_file.exists() and all(checkpoint_path(ckpt_dir, s).exists() for s in steps):
        log = json.loads(log_file.read_text())
        return dict(zip(log["steps"], log["accuracy"], strict=True))
    import torch

    torch.manual_seed(cfg.seed)
    model = build_model(DEMO_MODEL, **cfg.model_kwargs)
    inp = input_config(model)
    kwargs = {"image_size": inp["image_size"], "in_chans": inp["in_chans"], "mean": inp["mean"], "std": inp["std"]}
    log = train(model, open_source(TRAIN_DATA, **kwargs), open_source(TEST_DATA, **kwargs), steps, ckpt_dir,
                batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, progress=progress)
    return dict(zip(log.steps, log.accuracy, strict=True))


def run_demo(out_dir: str | Path = "tgo-demo", *, quick: bool = False, progress: bool = True) -> DemoSummary:
    """Run (or resume) the whole demo into out_dir; returns where everything is."""
    from tgo_analysis.analyze import analyze
    from tgo_analysis.report import write_report
    from tgo_store.ingest import ingest
    from tgo_store.open import open_store

    cfg = DemoConfig.quick() if quick else DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"
    store, results = str(out / "activations.zarr"), str(out / "metrics.zarr")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    accuracy = _train_if_needed(cfg, ckpt_dir, progress)
    seconds["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ingest(store, model_spec=DEMO_MODEL, model_kwargs=cfg.model_kwargs, checkpoints=str(ckpt_dir / "step_*.pth"),
           data_spec=TEST_DATA, batch_size=cfg.batch_size, device="cpu", progress=progress)
    seconds["ingest"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    analyze(open_store(store), "all", out=results, progress=progress)
    seconds["analyze"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = write_report(results, out / "report", training={"steps": list(accuracy), "accuracy": list(accuracy.values())})
    seconds["report"] = time.perf_counter() - t0
    return DemoSummary(out, store, results, report, accuracy, seconds)


def headline_rows(results: Any, accuracy: dict[int, float]) -> list[tuple[str, ...]]:
    """One row per checkpoint: step, accuracy, CLS alpha at the first block and the last layer,
    all-token alpha at the last layer, the layer of lowest mean token correlation, and ID."""
    import numpy as np

    rows = []
    for ci, step in enumerate(results.checkpoint.values):
        cls_alpha = results.alpha.isel(checkpoint=ci, token=0).values if "alpha" in results else None
        corr = results.mean_token_correlation.isel(checkpoint=ci).values if "mean_token_correlation" in results else None
        ids = results.intrinsic_dimension.isel(checkpoint=ci).values if "intrinsic_dimension" in results else None
        all_alpha = results.alpha_all.isel(checkpoint=ci).values if "alpha_all" in results else None
        def fmt(v):
            return ("n/a" if v is None or not np.isfinite(v) else f"{v:.3f}")
        lowest = "n/a" if corr is None or not np.isfinite(corr).any() else str(int(results.layer.values[np.nanargmin(corr)]))
        rows.append((str(int(step)), fmt(accuracy.get(int(step))),
                     fmt(None if cls_alpha is None else cls_alpha[1]), fmt(None if cls_alpha is None else cls_alpha[-1]),
                     fmt(None if all_alpha is None else all_alpha[-1]), lowest,
                     fmt(None if ids is None else ids[-1])))
    return rows
