"""`tgo export --format hf-datasets STORE --layer L --out DIR`: one layer as a flat-row Arrow dataset."""

from __future__ import annotations

from typing import Annotated

import typer

from tgo_analysis.orchestration.cli.app import app
from tgo_store.options import parse_selection


def checkpoint_choice(text: str | None) -> dict:
    """--checkpoints: None or 'last' -> the last one, 'all' -> every one, '0,3-5' -> those indices."""
    if text is None or text.strip().lower() == "last":
        return {"checkpoint": -1}
    chosen = parse_selection(text)
    return {"checkpoints": chosen} if chosen is not None else {"checkpoints": slice(None)}


@app.command()
def export(
    store: Annotated[str, typer.Argument(help="activation store URL")],
    layer: Annotated[int, typer.Option(help="the layer to export (a value of the store's `layer` coord)")],
    out: Annotated[str, typer.Option(help="folder to write (must not exist yet, unless it is this export)")],
    format_: Annotated[str, typer.Option("--format", help="hf-datasets: what `datasets.load_from_disk` opens")]
        = "hf-datasets",
    checkpoints: Annotated[str | None, typer.Option(help="checkpoint indices like 0,3-5, or all [default: the last]")]
        = None,
    tokens: Annotated[str | None, typer.Option(help="token indices like 0,5-9 [default: all]")] = None,
    exclude_special: Annotated[bool, typer.Option(help="leave out special tokens (text stores)")] = False,
    exclude_first: Annotated[bool, typer.Option(help="leave out each sequence's first valid token")] = False,
    shard_size: Annotated[str, typer.Option(help="bytes per Arrow file, e.g. 500MB")] = "500MB",
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Write every valid position of one layer as a row (activations float32, sample, token,
    checkpoint, token_id / label); an interrupted export resumes, a folder named --out is complete."""
    from tgo_store.loader.export import export as run_export

    summary = run_export(format_, store, layer, out, tokens=parse_selection(tokens), exclude_special=exclude_special,
                         exclude_first=exclude_first, shard_size=shard_size, progress=not quiet,
                         **checkpoint_choice(checkpoints))
    state = "already complete" if summary.already_complete else f"{summary.seconds:.1f} s"
    typer.echo(f"exported {summary.rows} rows in {summary.shards} shard(s), {summary.bytes / 1e6:.1f} MB ({state}): "
               f"{summary.path}")
