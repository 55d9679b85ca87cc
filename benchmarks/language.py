"""Row: language models (issue 11), three measures, each side by side in one run.

1. Storage overhead of text ingest: forward-only passes vs ``tgo ingest`` over the same token
   sequences of ``text:pydoc`` (MiniLM, interleaved, medians; SmolLM2 once, from part 3).
2. Pooled covariance spectra at SmolLM2's width (576 features) over >= 1M positions of a
   synthetic float16 store: tgo ``analyze(..., "pooled")`` in a child process (peak RSS, at 1/4
   and all of the positions: memory flat in N) vs numpy in memory (np.cov + eigvalsh, float64)
   vs the roofline (one float64 XᵀX GEMM over the same data + eigvalsh).
3. Pooled anisotropy profiles of the two packaged real models on ``text:pydoc``, all positions
   and without special tokens / first positions, ``top1_share_pooled`` per layer, and one report
   with both models side by side in results/language-profiles/.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS, run_child, write_store

ENCODER, DECODER = "minilm", "smollm2"
REPORT_DIR = RESULTS / "language-profiles"
REPEATS = 3
ROOFLINE_ROWS = 8192  # points per block of the roofline's XᵀX
# spectra: the (checkpoint, layer, sample, token, feature) shapes of the positions sweep, the
# largest last (it is also the one timed against numpy and the roofline);
# overhead: (sequences, seq_len) of the MiniLM ingest-vs-forward runs;
# profiles: model -> sequences of seq_len tokens for the anisotropy profiles ({} skips part 3).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"spectra": [(1, 1, 64, 16, 32), (1, 1, 256, 16, 32)], "overhead": (16, 32), "seq_len": 32,
             "profiles": {ENCODER: 16}},
    "small": {"spectra": [(1, 1, 2048, 128, 576), (1, 1, 8192, 128, 576)], "overhead": (256, 128), "seq_len": 128,
              "profiles": {ENCODER: 256, DECODER: 128}},
    "medium": {"spectra": [(1, 1, 2048, 128, 576), (1, 1, 8192, 128, 576)], "overhead": (512, 128), "seq_len": 128,
               "profiles": {ENCODER: 512, DECODER: 256}},
    "large": {"spectra": [(1, 1, 4096, 128, 576), (1, 1, 16384, 128, 576)], "overhead": (512, 128),
              "seq_len": 128, "profiles": {ENCODER: 1024, DECODER: 512}},
}
INGEST_KW = {"batch_size": 32, "samples_per_block": 64, "progress": False, "dtype": "float16"}
# tgo in a fresh process: argv = store, metrics; reports seconds and its own peak RSS (VmHWM)
TGO = """
import json, sys, time
import tgo_analysis
import tgo_store
ds = tgo_store.open_store(sys.argv[1])  # as `tgo analyze` opens it
start = time.perf_counter()
res = tgo_analysis.analyze(ds, sys.argv[2], progress=False)
seconds = time.perf_counter() - start
top = float(res["eigenvalues_pooled"].isel(checkpoint=0, layer=0).max())
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "peak_rss_mb": int(hwm.split()[1]) / 1024, "lambda1": top}))
"""


# ---- 1. ingest vs forward-only -------------------------------------------------------------

def text_options(sequences: int, seq_len: int) -> dict[str, int]:
    return {"seq_len": seq_len, "samples": sequences, "seed": 0}


def forward_seconds(model: Any, sequences: int, seq_len: int, device: str) -> tuple[float, int]:
    """One forward-only pass (the backbone ingest runs, no hidden states kept) over the same
    token batches ingest reads; returns (seconds, valid tokens)."""
    import torch

    from tgo_store.capture.models import input_config
    from tgo_store.sources import open_source

    source = open_source("text:pydoc", **input_config(model), **text_options(sequences, seq_len))
    backbone = getattr(model, "base_model", model).to(device)
    batches = [b.inputs for b in source.batches(INGEST_KW["batch_size"])]
    tokens = int(sum(np.asarray(b.attention_mask).sum() for b in batches))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    start = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            backbone(input_ids=torch.as_tensor(b.ids, device=device),
                     attention_mask=torch.as_tensor(b.attention_mask, device=device).long())
    sync()
    return time.perf_counter() - start, tokens


def ingest_text(path: Path, name: str, sequences: int, seq_len: int, device: str) -> Any:
    from tgo_store.ingestion import ingest

    return ingest(str(path), model_spec=f"hf:{name}", checkpoints=None, data_spec="text:pydoc",
                  data_options=text_options(sequences, seq_len), device=device, **INGEST_KW)


def ingest_overhead(tmp: Path, name: str, sequences: int, seq_len: int, device: str) -> dict[str, Any]:
    """Forward-only and ingest interleaved REPEATS times (the VM's speed drifts); medians."""
    from tgo_store.capture.models import build_model

    model = build_model(f"hf:{name}").eval()
    forward_seconds(model, min(sequences, INGEST_KW["batch_size"]), seq_len, device)  # warm-up
    runs: dict[str, list[float]] = {"forward": [], "ingest": []}
    tokens = 0
    for index in range(REPEATS):
        seconds, tokens = forward_seconds(model, sequences, seq_len, device)
        runs["forward"].append(seconds)
        runs["ingest"].append(ingest_text(tmp / f"overhead{index}.zarr", name, sequences, seq_len, device).seconds)
    median = {k: statistics.median(v) for k, v in runs.items()}
    return {f"{name}_sequences": sequences, f"{name}_seq_len": seq_len, f"{name}_tokens": tokens,
            f"{name}_forward_tok_s": tokens / median["forward"], f"{name}_ingest_tok_s": tokens / median["ingest"],
            f"{name}_forward_tok_s_runs": [round(tokens / s) for s in runs["forward"]],
            f"{name}_ingest_tok_s_runs": [round(tokens / s) for s in runs["ingest"]],
            f"{name}_ingest_fraction_of_forward": median["forward"] / median["ingest"],
            f"{name}_storage_overhead_fraction": 1 - median["forward"] / median["ingest"]}


# ---- 2. pooled spectra vs numpy vs roofline -----------------------------------------------

def numpy_pooled(x: np.ndarray) -> tuple[float, float]:
    """np.cov (float64) + eigvalsh of all positions as points, data already in RAM; (seconds, λ1)."""
    points = x.reshape(-1, x.shape[-1])
    start = time.perf_counter()
    eig = np.linalg.eigvalsh(np.cov(points, rowvar=False, dtype=np.float64))
    return time.perf_counter() - start, float(eig[-1])


def roofline_pooled(x: np.ndarray, rows: int = ROOFLINE_ROWS) -> dict[str, float]:
    """The floor: one float64 XᵀX over the same points (already float64 in RAM) + eigvalsh.

    XᵀX is summed over blocks of ``rows`` points: on this machine that runs ~1.3-1.5x faster
    than one ``points.T @ points`` over a million rows (BLAS syrk/gemm with k = 1M leave cache).
    """
    points = x.reshape(-1, x.shape[-1]).astype(np.float64)
    gram = np.zeros((points.shape[1], points.shape[1]))
    start = time.perf_counter()
    for lo in range(0, len(points), rows):
        block = points[lo:lo + rows]
        gram += block.T @ block
    gemm = time.perf_counter() - start
    n_points = points.shape
    del points
    start = time.perf_counter()
    np.linalg.eigvalsh(gram)
    eig = time.perf_counter() - start
    flops = 2.0 * n_points[0] * n_points[1] ** 2
    return {"gemm_seconds": gemm, "eigvalsh_seconds": eig, "seconds": gemm + eig, "gemm_gflops": flops / gemm / 1e9}


def pooled_spectra(tmp: Path, shapes: list[tuple[int, ...]]) -> dict[str, Any]:
    import xarray as xr

    out: dict[str, Any] = {}
    rss = []
    for shape in shapes:
        store = write_store(tmp / f"pooled{shape[2]}.zarr", shape, chunk=128, dtype="float16")
        positions = shape[2] * shape[3]
        tgo = run_child(TGO, str(store), "pooled")
        rss.append(tgo["peak_rss_mb"])
        out[f"positions_{positions}_tgo_seconds"] = tgo["seconds"]
        out[f"positions_{positions}_tgo_peak_rss_mb"] = tgo["peak_rss_mb"]
        out[f"positions_{positions}_store_mb"] = float(np.prod(shape)) * 2 / 1e6
    out["tgo_rss_growth"] = rss[-1] / rss[0]
    out["positions_growth"] = (shapes[-1][2] * shapes[-1][3]) / (shapes[0][2] * shapes[0][3])
    shape = shapes[-1]
    x = xr.open_zarr(store).activations.isel(checkpoint=0, layer=0).values  # float16, in RAM
    numpy_s, numpy_l1 = numpy_pooled(x)
    floor = roofline_pooled(x)
    del x
    tgo_s = out[f"positions_{shape[2] * shape[3]}_tgo_seconds"]
    out.update({"store_shape": list(shape), "positions": shape[2] * shape[3], "features": shape[4],
                "numpy_in_memory_seconds": numpy_s, "roofline_seconds": floor["seconds"],
                "roofline_gemm_seconds": floor["gemm_seconds"], "roofline_eigvalsh_seconds": floor["eigvalsh_seconds"],
                "roofline_gemm_gflops": floor["gemm_gflops"],
                "tgo_time_vs_numpy_in_memory": tgo_s / numpy_s, "tgo_fraction_of_roofline": floor["seconds"] / tgo_s,
                "lambda1_rel_diff_tgo_vs_numpy": abs(tgo["lambda1"] - numpy_l1) / numpy_l1})
    return {f"spectra_{k}": v for k, v in out.items()}


# ---- 3. real models' pooled anisotropy profiles -------------------------------------------

def profiles(tmp: Path, models: dict[str, int], seq_len: int, device: str, report_dir: Path) -> dict[str, Any]:
    """Ingest each model, analyse all positions and without special/first; one compared report."""
    from tgo_analysis import names as N
    from tgo_analysis.analyze import analyze
    from tgo_analysis.report import write_report
    from tgo_store.capture.models import build_model
    from tgo_store.store.open import open_store

    out: dict[str, Any] = {}
    results: dict[str, Any] = {}
    for name, sequences in models.items():
        start = time.perf_counter()
        model = build_model(f"hf:{name}").eval()  # loads once (cached); ingest copies it
        out[f"{name}_load_seconds"] = time.perf_counter() - start
        path = tmp / f"{name}.zarr"
        if name != ENCODER:  # the encoder's overhead is measured in part 1; one pass for the decoder
            forward_seconds(model, min(sequences, INGEST_KW["batch_size"]), seq_len, device)  # warm-up
            forward, tokens = forward_seconds(model, sequences, seq_len, device)
            summary = ingest_text(path, name, sequences, seq_len, device)
            out.update({f"{name}_tokens": tokens, f"{name}_forward_tok_s": tokens / forward,
                        f"{name}_ingest_tok_s": tokens / summary.seconds,
                        f"{name}_ingest_fraction_of_forward": forward / summary.seconds})
        else:
            ingest_text(path, name, sequences, seq_len, device)
        del model
        out[f"{name}_profile_sequences"] = sequences
        ds = open_store(str(path))
        for label, excluded in (("all", False), ("no_special_first", True)):
            start = time.perf_counter()
            res = analyze(ds, f"{N.POOLED},{N.FREQUENCY}", out=str(tmp / f"{name}-{label}.zarr"), progress=False,
                          exclude_special=excluded, exclude_first=excluded)
            out[f"{name}_{label}_analyze_seconds"] = time.perf_counter() - start
            top1 = res[N.TOP1_SHARE_POOLED].isel(checkpoint=0).values
            out[f"{name}_{label}_top1_share_pooled"] = [round(float(v), 4) for v in top1]
            results[(name, label)] = tmp / f"{name}-{label}.zarr"
    names = {ENCODER: "MiniLM", DECODER: "SmolLM2"}
    main, *others = results
    compare = {f"{names[n]} ({lab.replace('_', ' ')})": results[(n, lab)] for n, lab in others}
    report_dir.mkdir(parents=True, exist_ok=True)
    write_report(results[main], report_dir, title=f"{names[main[0]]} vs SmolLM2: pooled anisotropy on text:pydoc",
                 compare=compare)
    out["report_mb"] = sum(f.stat().st_size for f in report_dir.rglob("*") if f.is_file()) / 1e6
    root = RESULTS.parent.parent
    out["report"] = str(report_dir.relative_to(root) if report_dir.is_relative_to(root) else report_dir)
    return {f"profiles_{k}": v for k, v in out.items()}


def run(size: str = "small", device: str = "cpu") -> dict[str, Any]:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return {"skipped": "no CUDA device on this machine"}
    cfg = SIZES[size]
    out: dict[str, Any] = {"device": device}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sequences, seq_len = cfg["overhead"]
        start = time.perf_counter()
        out.update(ingest_overhead(root, ENCODER, sequences, seq_len, device))
        out["overhead_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        out.update(pooled_spectra(root, cfg["spectra"]))
        out["spectra_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        if cfg["profiles"]:
            report_dir = root / "report" if size == "tiny" else REPORT_DIR  # a smoke test keeps the real one
            out.update(profiles(root, cfg["profiles"], cfg["seq_len"], device, report_dir))
        out["profiles_seconds"] = time.perf_counter() - start
    return out


if __name__ == "__main__":
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "small"), indent=1))
