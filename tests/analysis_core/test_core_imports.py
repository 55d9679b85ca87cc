"""The measuring core of tgo_analysis imports neither torch nor tgo_store's capture (issue 10)."""

from __future__ import annotations

import subprocess
import sys

CORE = ("moments", "spectra", "metrics", "correlation", "intrinsic", "clustering", "reductions", "pooled",
        "frequency", "tangent", "seminmf", "budget", "selection", "results_template", "results_store")


def test_measuring_core_imports_no_torch_and_no_capture() -> None:
    code = (
        "import sys\n"
        + "".join(f"import tgo_analysis.{name}\n" for name in CORE)
        + "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('tgo_store.capturers')"
        " or m in ('tgo_store.ingestion', 'tgo_store.writer', 'timm', 'transformers'))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"the measuring core imported {done.stdout.strip()}"
