"""`tgo sweep sweep.toml`: ingest and analyze many checkpoints on a dask.distributed cluster."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from tgo_analysis.orchestration.cli.app import app


@app.command()
def sweep(
    config: Annotated[str, typer.Argument(help="sweep.toml (see the tgo_analysis.orchestration.sweep docstring or README)")],
    scheduler: Annotated[str | None, typer.Option(help="address of an existing cluster's scheduler")] = None,
    workers: Annotated[int, typer.Option(help="LocalCluster worker processes (when no --scheduler)")] = 2,
    threads_per_worker: Annotated[int, typer.Option(help="threads per LocalCluster worker")] = 1,
    memory_limit: Annotated[str, typer.Option(help="memory limit per LocalCluster worker")] = "auto",
    status: Annotated[bool, typer.Option("--status", help="show what is done and exit")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="keep picking up new checkpoints until the stop file appears")] = False,
    poll: Annotated[float, typer.Option(help="seconds between checks for new checkpoints in --watch")] = 30.0,
    quiet: Annotated[bool, typer.Option(help="no progress table")] = False,
) -> None:
    """Split the work into (checkpoint, sample block) tasks; re-running resumes."""
    from rich.console import Console
    from rich.table import Table

    from tgo_analysis.scheduler import scheduler_context
    from tgo_analysis.orchestration.sweep import load_config, run_sweep, sweep_status

    cfg = load_config(config)
    if status:
        rows, notes = sweep_status(cfg)
        table = Table("step", "blocks", "state", "path", title=cfg.store)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        for note in notes:
            typer.echo(note)
        return
    from distributed import get_client

    with scheduler_context(scheduler, None if scheduler else workers, None if scheduler else memory_limit,
                           threads_per_worker=threads_per_worker):
        client = get_client()
        while True:
            summary = run_sweep(cfg, client, progress=not quiet)
            typer.echo(f"{summary.blocks_written} blocks written, {summary.blocks_skipped} already there, "
                       f"{summary.seconds:.1f} s")
            stop = Path(cfg.stop_file) if cfg.stop_file else None
            if not watch or (stop is not None and stop.exists()):
                return
            time.sleep(poll)
