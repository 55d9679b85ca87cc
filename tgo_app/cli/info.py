"""`tgo info STORE`: dims, sizes, completeness, bytes on disk."""

from __future__ import annotations

from typing import Annotated

import typer

from tgo_app.cli.app import app


@app.command()
def info(store: Annotated[str, typer.Argument(metavar="STORE", help="store URL")]) -> None:
    """Show what is in a store without reading its activations."""
    from rich.console import Console
    from rich.table import Table

    from tgo_analysis.results.completeness import results_lines
    from tgo_store.store.info import store_info
    from tgo_store.store.recreate import store_ingest_command

    said = results_lines(store)  # a results store: what it holds, whether it is complete
    if said is not None:
        for line in said:
            typer.echo(line)
        return
    facts = store_info(store)
    console = Console()
    dims = "  ".join(f"{k}={v}" for k, v in facts.dims.items())
    console.print(f"[bold]{facts.url}[/bold]  activations {facts.dtype}  {dims}")
    console.print(f"chunks {facts.chunks}  shards {facts.shards}")
    ratio = facts.bytes_stored / facts.bytes_logical if facts.bytes_logical else 0.0
    console.print(f"bytes stored {facts.bytes_stored / 1e6:.1f} MB of {facts.bytes_logical / 1e6:.1f} MB logical ({ratio:.2f})")
    console.print(f"model {facts.attrs.get('model', {}).get('name', '?')}  dataset {facts.attrs.get('dataset', {}).get('name', '?')}")
    console.print("re-create (or extend with more --checkpoints):", soft_wrap=True)
    console.print(store_ingest_command(facts.url, facts.attrs), soft_wrap=True, markup=False, highlight=False)
    table = Table("index", "step", "blocks", "complete")
    table.add_column("path", overflow="fold")  # a long path wraps, never cut
    for c in facts.checkpoints:
        done = c["blocks_done"] == facts.blocks_per_checkpoint
        table.add_row(str(c["index"]), str(c["step"]), f"{c['blocks_done']}/{facts.blocks_per_checkpoint}",
                      "yes" if done else "no", c["path"])
    console.print(table)
    for c in facts.checkpoints:
        if c.get("failed"):
            console.print(f"checkpoint {c['index']} (step {c['step']}) cannot be finished by a re-run: {c['failed']}. "
                          f"The other checkpoints are intact: `tgo analyze {facts.url} --out RESULTS "
                          "--complete-only` analyses the complete ones", soft_wrap=True)
    temps = facts.temporaries
    if temps.removed:
        console.print(f"removed {len(temps.removed)} temporary file(s) ({temps.removed_bytes / 1e6:.1f} MB) "
                      "of writes a kill cut short", soft_wrap=True)
    if temps.left:
        console.print(f"{len(temps.left)} temporary file(s) ({temps.left_bytes / 1e6:.1f} MB) of unfinished writes "
                      "are left for the writer or the `tgo ingest` that finishes those blocks", soft_wrap=True)
    if facts.interrupted:
        console.print("a checkpoint append was cut short: re-run the same `tgo ingest` to finish it")
    if facts.complete:
        console.print("complete")
    elif not any(c.get("failed") for c in facts.checkpoints):
        console.print("incomplete: re-run the same `tgo ingest` to finish")

