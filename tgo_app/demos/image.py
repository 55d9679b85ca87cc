"""The embedded default, end to end and offline: train -> checkpoints -> ingest -> analyze -> report.

A small timm ViT (img 16, patch 4, depth 6, dim 128: 17 tokens with CLS, a 4 x 4 patch grid) learns scikit-learn's
bundled handwritten digits; checkpoints at log-spaced steps (0 = initialisation) are recorded
on the held-out digits through the same ingest code as ``tgo ingest``, analysed with Dask and
reported. Every stage resumes: re-running skips what is already on disk.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tgo_analysis import names as N
from tgo_store.errors import TgoError

DEMO_MODEL = "vit_tiny_patch16_224"  # a timm name; the kwargs below make it the small demo ViT
DEMO_MODEL_KWARGS = {
    "img_size": 16,  # 8 x 8 digits: a 4 x 4 grid of 2 x 2-pixel patches (32 px, 65 tokens: 3.5x the step time)
    "patch_size": 4,
    "embed_dim": 128,
    "depth": 6,
    "num_heads": 4,
    "in_chans": 1,
    "num_classes": 10,
}
TRAIN_DATA, TEST_DATA = "sklearn:digits:train", "sklearn:digits:test"


@dataclass(frozen=True)
class DemoConfig:
    """Everything that decides the checkpoints; a folder trained with another config is refused."""

    train_steps: int = 500
    n_checkpoints: int = 7
    batch_size: int = 64
    lr: float = 1e-3  # measured: 2e-3 reached 72 % held-out accuracy after 600 steps, 1e-3 90 % after 300
    seed: int = 0
    model_kwargs: dict = field(default_factory=lambda: dict(DEMO_MODEL_KWARGS))

    @classmethod
    def quick(cls) -> DemoConfig:
        """A smoke run: the same model, 40 steps, 3 checkpoints (about a minute on 2 cores)."""
        return cls(train_steps=40, n_checkpoints=3)

    def steps(self) -> list[int]:
        from tgo_app.training.vit import log_spaced_steps

        return log_spaced_steps(self.train_steps, self.n_checkpoints)


@dataclass
class DemoSummary:
    out_dir: Path
    store: str
    results: str
    report: Path
    training: dict  # {"steps", "accuracy", "loss", "seconds"}
    seconds: dict[str, float]
    others: dict[str, str] = field(default_factory=dict)  # {label: results URL} of the compared analyses

    def per_step(self, key: str) -> dict[int, float]:
        """A logged training series by step (``accuracy`` for images, ``held_out_loss`` for text)."""
        return dict(zip(self.training["steps"], self.training[key], strict=True))


def _train_if_needed(cfg: DemoConfig, ckpt_dir: Path, progress: bool) -> tuple[dict, list[Path]]:
    """Train unless this config's checkpoints are all there (resume = skip); returns the log and files."""
    from tgo_app.training.vit import (
        checkpoint_path,
        finished_training,
        train,
        write_training_log,
    )

    steps = cfg.steps()
    files = [checkpoint_path(ckpt_dir, s) for s in steps]
    log = finished_training(ckpt_dir, cfg, steps, files)
    if log is not None:
        return log, files
    import torch

    from tgo_store.capture.models import build_model, input_config
    from tgo_store.sources import open_source

    torch.manual_seed(cfg.seed)
    model = build_model(DEMO_MODEL, **cfg.model_kwargs)
    inp = input_config(model)
    kwargs = {k: inp[k] for k in ("in_chans", "mean", "std")}
    train_source = open_source(TRAIN_DATA, image_size=inp["image_size"], **kwargs)
    test_source = open_source(TEST_DATA, image_size=inp["image_size"], **kwargs)
    log = train(
        model, train_source, test_source, steps, ckpt_dir,
        batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, progress=progress,
    ).to_json()
    write_training_log(ckpt_dir, log, cfg)
    return log, files


def prepare_out_dir(out_dir: str | Path) -> Path:
    """The demo's output folder, created; a one-line error when it cannot be."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TgoError(f"cannot create {out} ({exc}); choose a writable --out") from exc
    return out


def run_demo(
    out_dir: str | Path = "tgo-demo",
    *,
    quick: bool = False,
    progress: bool = True,
    config: DemoConfig | None = None,
) -> DemoSummary:
    """Run (or resume) the whole demo into out_dir; returns where everything is."""
    cfg = config or (DemoConfig.quick() if quick else DemoConfig())
    out = prepare_out_dir(out_dir)
    t0 = time.perf_counter()
    training, files = _train_if_needed(cfg, out / "checkpoints", progress)
    seconds = {"train": time.perf_counter() - t0}
    title = f"tgo demo: ViT on scikit-learn digits ({'quick' if quick else 'full'} run)"
    return ingest_analyse_report(out, training, seconds, title=title, progress=progress, model_spec=DEMO_MODEL,
                                 model_kwargs=cfg.model_kwargs, checkpoints=[str(f) for f in files],
                                 data_spec=TEST_DATA, batch_size=cfg.batch_size, device="cpu")


def demo_metrics(ds: Any, groups: str = "all") -> list[str]:
    """``groups`` (``--metrics`` syntax) less the tangent share of representation updates.

    That share fits one semi-NMF per (checkpoint, layer) beside the tangent statistic's own fits,
    which would dominate a demo's run time; the update norm and its PCA share stay.
    """
    from tgo_analysis import names as N
    from tgo_analysis.results.selection import parse_metrics

    everything = parse_metrics(groups, ds)
    chosen = [m for m in everything if m not in (N.UPDATES, N.UPDATE_TANGENT_ENERGY)]
    kept = (N.UPDATE_NORM, N.UPDATE_PCA_ENERGY) if N.UPDATES in everything else ()
    return [*chosen, *(m for m in kept if m not in chosen)]


def ingest_and_analyse(out: Path, seconds: dict[str, float], *, progress: bool, metrics: Any = None,
                       compare: dict[str, tuple[str, dict]] | None = None, analysis_options: dict | None = None,
                       stage: str = "", **ingest_options: Any) -> tuple[str, str, dict[str, str]]:
    """Ingest (resumes) into ``out/activations.zarr``, analyze into ``out/metrics.zarr``; returns (store,
    results, {label: compared results}) and adds the stages' seconds (``ingest<stage>``, ``analyze<stage>``).

    ``metrics``: a function of the store giving the metric list (default ``demo_metrics``).
    ``compare``: {label: (metrics, analyze keyword options)} analysed again into a results store named by
    its options (``metrics-exclude-first.zarr``) and drawn beside the main results (the text demo: pooled
    metrics without the first position); the summary lists it, so no file in the folder goes unexplained.
    """
    from tgo_analysis.analyze import analyze, summary_line
    from tgo_store.ingestion import ingest
    from tgo_store.store.open import open_store

    out.mkdir(parents=True, exist_ok=True)
    store, results = str(out / "activations.zarr"), str(out / "metrics.zarr")
    t0 = time.perf_counter()
    ingest(store, progress=progress, **ingest_options)
    seconds["ingest" + stage] = time.perf_counter() - t0
    t0 = time.perf_counter()
    dataset = open_store(store)
    said = analyze(dataset, (metrics or demo_metrics)(dataset), out=results, progress=progress,
                   **(analysis_options or {}))
    if progress:  # analyze() no longer prints: the demo says what it computed and reused, as the verb does
        print(summary_line(said), file=sys.stderr)
    others = {}
    for label, (chosen, options) in (compare or {}).items():
        others[label] = str(out / compare_name(options))
        analyze(open_store(store), chosen, out=others[label], progress=progress, **options)
    seconds["analyze" + stage] = time.perf_counter() - t0
    return store, results, others


def report_stage(out: Path, results: str, others: dict[str, str], training: dict, seconds: dict[str, float], *,
                 title: str, progress: bool) -> Path:
    """Write ``out/report`` (reused when its inputs are unchanged); adds the stage's seconds."""
    from tgo_analysis.report import stamp, write_report

    t0 = time.perf_counter()
    report_dir = out / "report"
    digest = stamp.inputs_digest([results, *others.values()], {"title": title, "training": training,
                                                                "compare": sorted(others)})
    if stamp.is_current(report_dir, digest):  # a resumed, finished demo: the page is already these results'
        report = report_dir / "index.html"
        if progress:
            print(f"report reused: {report} (its results are unchanged)", file=sys.stderr)
    else:
        report = write_report(results, report_dir, title=title, training=training, compare=others)
        stamp.mark(report_dir, digest)
    seconds["report"] = time.perf_counter() - t0
    return report


def ingest_analyse_report(out: Path, training: dict, seconds: dict[str, float], *, title: str, progress: bool,
                          compare: dict[str, tuple[str, dict]] | None = None, analysis_options: dict | None = None,
                          **ingest_options: Any) -> DemoSummary:
    """The stages every demo shares after training: ingest (resumes), analyze ``all``, report."""
    store, results, others = ingest_and_analyse(out, seconds, progress=progress, compare=compare,
                                                analysis_options=analysis_options, **ingest_options)
    report = report_stage(out, results, others, training, seconds, title=title, progress=progress)
    return DemoSummary(out, store, results, report, training, seconds, others)


def compare_name(options: dict[str, Any]) -> str:
    """The results store of a compared analysis, named by what differs: ``metrics-exclude-first.zarr``."""
    words = [key.replace("_", "-") if value is True else f"{key.replace('_', '-')}-{value}"
             for key, value in sorted(options.items())]
    return "metrics-" + ("-".join(words) or "compare") + ".zarr"


HEADLINE_COLUMNS = (  # short, so the table fits 80 columns; HEADLINE_LEGEND says what each one is
    "step",
    "acc",
    "CLS α L1",
    "CLS α last",
    "all α last",
    "min corr L",
    "ID last",
)
HEADLINE_LEGEND = ("acc: held-out accuracy. CLS α L1 / last: alpha of the CLS token at the first block (layer 0 "
                   "has no value) and the last layer. all α last: alpha of all tokens concatenated, last layer. "
                   "min corr L: the layer of lowest mean token correlation. ID last: TwoNN intrinsic "
                   "dimension of all tokens, last layer.")


def metric_at(results: Any, name: str, checkpoint: int, **sel: int) -> Any:
    """The values of ``name`` at one checkpoint (and any other positional selection); None if absent."""
    return results[name].isel(checkpoint=checkpoint, **sel).values if name in results else None


def format_value(value: Any) -> str:
    """Three decimals, or 'n/a' for an absent or non-finite value (the headline tables' rule)."""
    import numpy as np

    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def headline_rows(results: Any, accuracy: dict[int, float]) -> list[tuple[str, ...]]:
    """One row per checkpoint (HEADLINE_COLUMNS); 'n/a' where a metric is absent or NaN.

    CLS alpha is read at layer 1 (the first block): at layer 0 the CLS token is the same
    learned vector for every image, so its spectrum is all zeros and alpha is NaN.
    """
    import numpy as np

    rows = []
    for ci, step in enumerate(results[N.CHECKPOINT].values):
        cls_alpha = metric_at(results, N.ALPHA, ci, token=0)
        corr = metric_at(results, N.MEAN_TOKEN_CORRELATION, ci)
        all_alpha = metric_at(results, N.all_tokens(N.ALPHA), ci)
        ids = metric_at(results, N.INTRINSIC_DIMENSION, ci)
        lowest = "n/a"
        if corr is not None and np.isfinite(corr).any():
            lowest = str(int(results[N.LAYER].values[np.nanargmin(corr)]))
        rows.append(
            (
                str(int(step)),
                format_value(accuracy.get(int(step))),
                format_value(None if cls_alpha is None or cls_alpha.size < 2 else cls_alpha[1]),
                format_value(None if cls_alpha is None else cls_alpha[-1]),
                format_value(None if all_alpha is None else all_alpha[-1]),
                lowest,
                format_value(None if ids is None else ids[-1]),
            )
        )
    return rows
