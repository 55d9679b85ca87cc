"""`tgo verify STORE`: check every committed block (shards, checksums, metadata, NaN/Inf)."""

from __future__ import annotations

from typing import Annotated

import typer

from tgo_app.cli.app import app


@app.command()
def verify(store: Annotated[str, typer.Argument(help="store URL")],
           metadata_only: Annotated[bool, typer.Option(help="check metadata, commit records and the shards' "
                                                            "presence without reading the data")] = False) -> None:
    """Check every committed block of a store; print one line per damaged block and exit non-zero."""
    from tgo_store.store.verify import damage_summary, verify_store

    result = verify_store(store, data=not metadata_only)
    for damage in result.damage:
        print(damage.line())
    print(damage_summary(result))
    if not result.ok:
        raise typer.Exit(1)
