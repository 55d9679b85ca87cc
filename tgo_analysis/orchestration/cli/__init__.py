"""The ``tgo`` console script: thin verbs that parse arguments and call the library.

Each verb lives in its own module and registers itself on :data:`app` when imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from tgo_analysis.orchestration.cli.app import app, run

VERB_MODULES = ("ingest", "info", "analyze", "report", "demo", "sweep")


def _register_verbs() -> None:
    for name in VERB_MODULES:
        importlib.import_module(f"tgo_analysis.orchestration.cli.{name}")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``tgo`` console script (``argv``: for running it in-process, e.g. in tests)."""
    _register_verbs()
    run(argv)


__all__ = ["app", "main"]
