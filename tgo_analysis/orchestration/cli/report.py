"""`tgo report RESULTS --out DIR`: figures and a self-contained HTML page."""

from __future__ import annotations

from typing import Annotated

import typer

from tgo_analysis.orchestration.cli.app import app


@app.command()
def report(
    results: Annotated[str, typer.Argument(help="results store written by `tgo analyze`")],
    out: Annotated[str, typer.Option(help="folder for index.html and the PNG figures")],
    title: Annotated[str | None, typer.Option(help="page title")] = None,
    spectrum_token: Annotated[
        int | None, typer.Option(help="token of the eigenspectrum figure [default: first token]")
    ] = None,
    spectrum_step: Annotated[
        int | None,
        typer.Option(help="checkpoint (training step) of the eigenspectrum figure [default: last]"),
    ] = None,
    compare: Annotated[
        list[str] | None,
        typer.Option(help="LABEL=RESULTS drawn beside these in the pooled anisotropy figure (repeatable)"),
    ] = None,
    without_final_norm: Annotated[
        bool, typer.Option(help="pooled anisotropy: leave out the last hidden state taken after the final norm "
                                "(Razzhigaev et al.'s layers 0..L-1)"),
    ] = False,
    allow_incomplete: Annotated[
        bool, typer.Option(help="draw results an analysis has not finished, under a banner naming the missing "
                                "units (default: refuse them)"),
    ] = False,
) -> None:
    """Draw every figure the results support and write DIR/index.html (self-contained)."""
    from tgo_analysis.report import parse_compare, write_report

    page = write_report(
        results, out, title=title, spectrum_token=spectrum_token, spectrum_step=spectrum_step,
        compare=parse_compare(compare), final_norm=not without_final_norm, allow_incomplete=allow_incomplete,
    )
    typer.echo(f"report written: {page.resolve()}")
