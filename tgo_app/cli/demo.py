"""`tgo demo [--text]`: the embedded defaults, end to end, offline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from tgo_app.cli.app import app, bool_flag


@dataclass(frozen=True)
class DemoKind:
    """How to run one demo and print its headline table (import paths keep the CLI light)."""

    module: str
    run: str
    columns: str
    legend: str
    rows: str
    series: str  # the training log's per-step score shown in the table
    title: str
    default_out: str

    def load(self, name: str) -> Callable[..., Any] | Any:
        import importlib

        return getattr(importlib.import_module(self.module), getattr(self, name))


DEMOS = {
    False: DemoKind("tgo_app.demos.image", "run_demo", "HEADLINE_COLUMNS", "HEADLINE_LEGEND",
                    "headline_rows", "accuracy", "tgo demo: headline numbers", "tgo-demo"),
    True: DemoKind("tgo_app.demos.text", "run_text_demo", "TEXT_HEADLINE_COLUMNS", "TEXT_HEADLINE_LEGEND",
                   "text_headline_rows", "held_out_loss", "tgo demo --text: headline numbers", "tgo-demo-text"),
}


@app.command()
def demo(
    out: Annotated[
        str | None, typer.Option(metavar="DIR", help="folder for checkpoints, stores and the report",
                                 show_default="tgo-demo, or tgo-demo-text with --text")
    ] = None,
    text: Annotated[
        bool, bool_flag("--text", "the language demo: a small LLaMA decoder and a BERT encoder of the same size "
                        "trained from scratch on Python's bundled documentation, recorded with their gradients")
    ] = False,
    quick: Annotated[bool, bool_flag("--quick", "a smoke run of a few minutes (a few training steps, 3 checkpoints)")] = False,
    quiet: Annotated[bool, bool_flag("--quiet", "no progress bars")] = False,
) -> None:
    """Train a small transformer, record every checkpoint, layer and token, measure and report; re-running resumes.

    A ViT on scikit-learn's digits, or with --text a decoder and an encoder on Python's documentation."""
    import xarray as xr
    from rich.console import Console

    kind = DEMOS[text]
    summary = kind.load("run")(out or kind.default_out, quick=quick, progress=not quiet)
    results = xr.open_zarr(summary.results, zarr_format=3)
    tables = [_table(kind, kind.title, results, summary.per_step(kind.series))]
    for label, log in (summary.training.get("beside") or {}).items():  # a model trained alongside (the encoder)
        tables.append(_table(kind, f"{kind.title}, {label}", xr.open_zarr(summary.others[label], zarr_format=3),
                             dict(zip(log["steps"], log[kind.series], strict=True))))
    console = Console()
    if not console.is_terminal:  # a log: as wide as the tables need, never cut at 80 columns
        wide = console.options.update(max_width=1000)
        needed = max(console.measure(t, options=wide).maximum for t in tables)
        console = Console(width=max(console.width, needed))
    for table in tables:
        console.print(table)
    console.print(kind.load("legend"))
    console.print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items()), soft_wrap=True)
    console.print(f"store:   {summary.store}\nresults: {summary.results}", soft_wrap=True)
    for label, path in summary.others.items():  # every folder the demo wrote is named
        console.print(f"compared: {path} ({label}; drawn beside the results in the report)", soft_wrap=True)
    console.print(f"[bold]report: {summary.report.resolve()}[/bold]  (open it in a browser)", soft_wrap=True)


def _table(kind: DemoKind, title: str, results: Any, per_step: dict[int, float]) -> Any:
    """The demo's headline table of one results store."""
    from rich.table import Table

    table = Table(*kind.load("columns"), title=title)
    for row in kind.load("rows")(results, per_step):
        table.add_row(*row)
    return table
