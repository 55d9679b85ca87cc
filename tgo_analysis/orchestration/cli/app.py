"""The typer application and the one place that turns errors into a one-line message."""

from __future__ import annotations

import sys

import typer

from tgo_store.errors import TgoError

app = typer.Typer(
    name="tgo",
    help="Transformer Geometry Observatory: record activations, measure their geometry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> None:
    """Print ``tgo: error: message`` on stderr and exit with ``code``."""
    print(f"tgo: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(code)


def run() -> None:
    """Run the app; user mistakes end with one line on stderr and a non-zero status."""
    try:
        app(standalone_mode=True)
    except TgoError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted; re-run the same command to resume where it stopped", 130)
