"""`tgo report RESULTS --out DIR`: figures and a self-contained HTML page."""

from __future__ import annotations

from typing import Annotated

import typer

from tgo_app.cli.app import app, bool_flag


@app.command()
def report(
    results: Annotated[str, typer.Argument(metavar="RESULTS", help="results store written by `tgo analyze`")],
    out: Annotated[str, typer.Option(metavar="DIR", help="folder for index.html and the PNG figures")],
    title: Annotated[str | None, typer.Option(metavar="TEXT", help="page title", show_default="tgo report")] = None,
    spectrum_token: Annotated[
        int | None, typer.Option(metavar="N", help="token of the eigenspectrum figure",
                                 show_default="the first token, CLS for a ViT; the middle position for text")
    ] = None,
    spectrum_step: Annotated[
        int, typer.Option(metavar="STEP", help="training step of the eigenspectrum figure (-1: the last)"),
    ] = -1,
    compare: Annotated[
        list[str] | None,
        typer.Option(metavar="LABEL=RESULTS", show_default=False,
                     help="other results drawn beside these in the pooled anisotropy figure (repeatable)"),
    ] = None,
    without_final_norm: Annotated[
        bool, bool_flag("--without-final-norm", "pooled anisotropy: leave out the last hidden state taken after "
                        "the final norm (Razzhigaev et al.'s layers 0..L-1)"),
    ] = False,
    allow_incomplete: Annotated[
        bool, bool_flag("--allow-incomplete", "draw results an analysis has not finished, under a banner naming "
                        "the missing units (without it they are refused)"),
    ] = False,
) -> None:
    """Draw every figure the results support and write DIR/index.html (self-contained)."""
    from tgo_analysis.report import parse_compare, write_report

    page = write_report(
        results, out, title=title, spectrum_token=spectrum_token, spectrum_step=spectrum_step,
        compare=parse_compare(compare), final_norm=not without_final_norm, allow_incomplete=allow_incomplete,
    )
    typer.echo(f"report written: {page.resolve()}")
