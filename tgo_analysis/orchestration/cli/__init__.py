"""The ``tgo`` console script: thin verbs that parse arguments and call the library.

Each verb lives in its own module and registers itself on :data:`app` when imported.
"""

from __future__ import annotations

import importlib

from tgo_analysis.orchestration.cli.app import app, run

VERB_MODULES = ("ingest", "info", "analyze", "report", "demo", "sweep")


def _register_verbs() -> None:
    for name in VERB_MODULES:
        try:
            importlib.import_module(f"tgo_analysis.orchestration.cli.{name}")
        except ModuleNotFoundError as exc:  # a verb not written yet
            if exc.name != f"tgo_analysis.orchestration.cli.{name}":
                raise


def main() -> None:
    """Entry point of the ``tgo`` console script."""
    _register_verbs()
    run()


__all__ = ["app", "main"]
