"""`tgo demo`: the embedded default, end to end, offline."""

from __future__ import annotations

from typing import Annotated

import typer

from tgo_analysis.orchestration.cli.app import app


@app.command()
def demo(
    out: Annotated[
        str, typer.Option(help="folder for checkpoints, stores and the report")
    ] = "tgo-demo",
    quick: Annotated[
        bool, typer.Option(help="a one-minute smoke run (40 training steps, 3 checkpoints)")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Train a small ViT on scikit-learn's digits, record every checkpoint, layer and token,
    analyse the geometry and write a report. Re-running resumes."""
    import xarray as xr
    from rich.console import Console
    from rich.table import Table

    from tgo_analysis.orchestration.demo import HEADLINE_COLUMNS, headline_rows, run_demo

    summary = run_demo(out, quick=quick, progress=not quiet)
    results = xr.open_zarr(summary.results, zarr_format=3)
    table = Table(*HEADLINE_COLUMNS, title="tgo demo: headline numbers")
    for row in headline_rows(results, summary.accuracy):
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items()))
    console.print(f"store:   {summary.store}\nresults: {summary.results}", soft_wrap=True)
    console.print(f"[bold]report: {summary.report.resolve()}[/bold]  (open it in a browser)", soft_wrap=True)
