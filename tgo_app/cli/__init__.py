"""The ``tgo`` console script: thin verbs that parse arguments and call the library.

Each verb lives in its own module and registers itself on :data:`app` when imported.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence

from tgo_app.cli.app import app, run

VERB_MODULES = ("ingest", "info", "analyze", "report", "demo", "sweep", "export", "verify")


def _register_verbs() -> None:
    for name in VERB_MODULES:
        importlib.import_module(f"tgo_app.cli.{name}")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``tgo`` console script (``argv``: for running it in-process, e.g. in tests)."""
    # torch's OpenMP threads spin while they wait; on a machine whose cores other processes also
    # use, a spinning thread holds a core the others need. Measured on this 2-core machine under
    # load ~20 (demo ViT step, 2 threads): 12-15 s per step spinning, 0.22 s with passive waits.
    # Set before torch is imported; a user's own OMP_WAIT_POLICY wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _register_verbs()
    run(argv)


__all__ = ["app", "main"]
