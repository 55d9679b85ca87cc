"""`tgo report RESULTS --out DIR`: figures and a self-contained HTML page."""

from __future__ import annotations

from typing import Annotated

import typer

from tgo_analysis.cli.app import app


@app.command()
def report(
    results: Annotated[str, typer.Argument(help="results store written by `tgo analyze`")],
    out: Annotated[str, typer.Option(help="folder for index.html and the PNG figures")],
    title: Annotated[str | None, typer.Option(help="page title")] = None,
) -> None:
    """Draw every figure the results support and write DIR/index.html."""
    from tgo_analysis.report import write_report

    page = write_report(results, out, title=title)
    typer.echo(f"report written: {page.resolve()}")
