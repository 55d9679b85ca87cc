"""Tiny models and checkpoints for tests and examples (no network, seconds on a CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_VIT = {"img_size": 16, "patch_size": 4, "embed_dim": 16, "depth": 2, "num_heads": 2,
            "num_classes": 10, "in_chans": 1}
TINY_VIT_SPEC = "vit_tiny_patch16_224"
DATA = "sklearn:digits:test"


def tiny_vit(**overrides: Any) -> Any:
    """A timm ViT small enough for unit tests (17 tokens, 16 features, 2 blocks)."""
    import timm

    return timm.create_model(TINY_VIT_SPEC, pretrained=False, **{**TINY_VIT, **overrides})


def save_checkpoints(directory: str | Path, steps: list[int], seed: int = 0, **overrides: Any) -> list[str]:
    """Save one randomly perturbed tiny ViT per step as ``step_<n>.pth``; returns the paths."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = tiny_vit(**overrides)
    paths = []
    for step in steps:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        path = directory / f"step_{step}.pth"
        torch.save({"model": model.state_dict(), "step": step}, path)
        paths.append(str(path))
    return paths

def leftover_temporaries(root: Any) -> list[str]:
    """Temporary files of writes under a store folder (zarr's ``*.partial``, tgo records' ``*.tmp``)."""
    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and p.name.endswith((".partial", ".tmp")))


def store_bytes(root: Any) -> dict[str, bytes]:
    """Every file of a local store but its ``_tgo`` records (they hold timestamps), by path: two
    stores are byte-identical when these are equal."""
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "_tgo" not in p.relative_to(root).parts}


def ingest_kwargs(ckpts: Any, **overrides: Any) -> dict:
    """Keyword arguments of `ingest` for the tiny ViT on the digits test split (tests, examples)."""
    base = {"model_spec": TINY_VIT_SPEC, "model_kwargs": dict(TINY_VIT), "checkpoints": ckpts, "data_spec": DATA,
            "batch_size": 32, "samples_per_block": 64, "device": "cpu", "progress": False}
    return {**base, **overrides}


def ingested_store(root: Path, steps: list[int] = (0, 10)) -> str:
    """A small store of the tiny ViT at ``steps`` (checkpoints saved under ``root/ckpt``): its path."""
    from tgo_store import ingest

    path = str(Path(root) / "s.zarr")
    ingest(path, **ingest_kwargs(save_checkpoints(Path(root) / "ckpt", list(steps))))
    return path


def cli_args(ckpt_glob: str, store: str, *extra: str) -> list[str]:
    """The `tgo ingest` arguments equivalent to `ingest_kwargs`."""
    args = ["ingest", "--model", TINY_VIT_SPEC, "--checkpoints", ckpt_glob, "--data", DATA, "--store", store,
            "--batch-size", "32", "--samples-per-block", "64", "--device", "cpu", "--quiet"]
    for key, value in TINY_VIT.items():
        args += ["--model-kwargs", f"{key}={value}"]
    return [*args, *extra]


def run_cli(argv: list[str], capsys: Any) -> Any:
    """The ``tgo`` console script's own ``main`` run in this process, as a CompletedProcess.

    Bad-input cases use it: the exit status and the stderr line are the script's, without an
    interpreter start-up (torch, timm, dask imports) per case."""
    import subprocess

    from tgo_app.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["tgo", *argv], code, out.out, out.err)


def llm_microscope_function(name: str) -> Any:
    """A function of llm-microscope's functions.py, the independent reference of two estimators.

    The package's __init__ imports a module it does not ship (logit_lens), so the file is loaded by itself.
    """
    import importlib.util

    package = importlib.util.find_spec("llm_microscope")
    path = Path(next(iter(package.submodule_search_locations))) / "functions.py"
    spec = importlib.util.spec_from_file_location("llm_microscope_functions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def run_memory_probe(probe: str, path: Any, limit_mb: int = 0) -> dict:
    """Run ``probe`` (Python source reading argv: store path, memory limit in MB) in a fresh process
    with one BLAS thread; its last stdout line is a JSON report (peak RSS and results)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", probe, str(path), str(limit_mb)], capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])

