"""The measuring core of tgo_analysis imports neither torch nor tgo_store's capture (issue 10)."""

from __future__ import annotations

import subprocess
import sys

CORE_PACKAGES = ("kernels", "statistics", "engine", "results")


def test_measuring_core_imports_no_torch_and_no_capture() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import tgo_analysis\n"
        f"for package in {CORE_PACKAGES!r}:\n"
        "    root = importlib.import_module('tgo_analysis.' + package)\n"
        "    for info in pkgutil.iter_modules(root.__path__):\n"
        "        importlib.import_module(f'tgo_analysis.{package}.{info.name}')\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('tgo_store.capture')"
        " or m in ('tgo_store.ingestion', 'tgo_store.store.writer', 'tgo_store.store.prepare', 'timm',"
        " 'transformers'))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"the measuring core imported {done.stdout.strip()}"
