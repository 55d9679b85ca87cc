"""`tgo sweep sweep.toml`: ingest and analyze many checkpoints on a dask.distributed cluster."""

from __future__ import annotations

from typing import Annotated

import typer

from tgo_app.cli.app import app, bool_flag


@app.command()
def sweep(
    config: Annotated[str, typer.Argument(metavar="SWEEP_TOML", help="sweep.toml (see the tgo_app.sweep docstring or README)")],
    scheduler: Annotated[str | None, typer.Option(metavar="ADDRESS", help="address of an existing cluster's scheduler",
                                                  show_default="a LocalCluster")] = None,
    workers: Annotated[int, typer.Option(min=1, metavar="N", help="LocalCluster worker processes (when no --scheduler)")] = 2,
    threads_per_worker: Annotated[int, typer.Option(min=1, metavar="N", help="threads per LocalCluster worker")] = 1,
    memory_limit: Annotated[str, typer.Option(metavar="SIZE", help="memory limit per LocalCluster worker")] = "auto",
    status: Annotated[bool, bool_flag("--status", "show what is done and exit")] = False,
    watch: Annotated[bool, bool_flag("--watch", "keep picking up new checkpoints until the stop file appears")] = False,
    poll: Annotated[float, typer.Option(min=0, metavar="SECONDS", help="seconds between checks for new checkpoints in "
                                        "--watch")] = 30.0,
    quiet: Annotated[bool, bool_flag("--quiet", "no progress table")] = False,
) -> None:
    """Split the work into (checkpoint, sample block) tasks; re-running resumes."""
    from rich.console import Console
    from rich.table import Table

    from tgo_app.sweep import load_config, sweep_on_cluster, sweep_status

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
    sweep_on_cluster(cfg, scheduler=scheduler, workers=workers, threads_per_worker=threads_per_worker,
                     memory_limit=memory_limit, watch=watch, poll=poll, progress=not quiet,
                     report=lambda s: typer.echo(f"{s.blocks_written} blocks written, {s.blocks_skipped} already "
                                                 f"there, {s.seconds:.1f} s"))
