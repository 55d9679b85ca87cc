"""`tgo export STORE --layer L --out DIR [--format hf-datasets|saelens]`: one layer as an Arrow dataset."""

from __future__ import annotations

from typing import Annotated

import typer

from tgo_app.cli.app import app, bool_flag
from tgo_store.errors import TgoError
from tgo_store.options import parse_selection


def checkpoint_choice(text: str) -> dict:
    """--checkpoints: training steps like 0,40 (-1: the last) or all, as every verb names checkpoints."""
    if text.strip().lower() == "all":
        return {"checkpoints": slice(None)}
    if text.strip() == "-1":  # the last: no step to look up
        return {"checkpoint": -1}
    try:
        return {"steps": [int(part) for part in text.split(",") if part.strip()]}
    except ValueError:
        raise TgoError(f"cannot read --checkpoints '{text}'; give training steps like 0,40 (-1: the last) "
                       "or all") from None


@app.command()
def export(
    store: Annotated[str, typer.Argument(metavar="STORE", help="activation store URL")],
    layer: Annotated[int, typer.Option(metavar="N", help="the layer to export (a value of the store's `layer` coord)")],
    out: Annotated[str, typer.Option(metavar="DIR", help="folder to write (must not exist yet, unless it is this export)")],
    format_: Annotated[str, typer.Option("--format", metavar="FORMAT", help="hf-datasets: one row per position, what "
                                         "`datasets.load_from_disk` opens; saelens: SAELens's cached activations")]
        = "hf-datasets",
    checkpoints: Annotated[str, typer.Option(metavar="STEPS", help="training steps like 0,40 (-1: the last), or all")]
        = "-1",
    tokens: Annotated[str | None, typer.Option(metavar="TOKENS", help="token indices like 0,5-9",
                                               show_default="all")] = None,
    exclude_special: Annotated[bool, bool_flag("--exclude-special", "leave out special tokens (text stores)")] = False,
    exclude_first: Annotated[bool, bool_flag("--exclude-first", "leave out each sequence's first valid token")] = False,
    shard_size: Annotated[str, typer.Option(metavar="SIZE", help="bytes per Arrow file, e.g. 500MB")] = "500MB",
    seed: Annotated[int | None, typer.Option(metavar="N", help="row order of --format saelens",
                                             show_default="0")] = None,
    quiet: Annotated[bool, bool_flag("--quiet", "no progress bar")] = False,
) -> None:
    """Write every valid position of one layer as a row (activations float32, sample, token,
    checkpoint, token_id / label), or with --format saelens one row per sequence under the layer's
    TransformerLens hook name; an interrupted export resumes, a folder named --out is complete."""
    from tgo_store.loader.export import export as run_export

    summary = run_export(format_, store, layer, out, tokens=parse_selection(tokens), exclude_special=exclude_special,
                         exclude_first=exclude_first, shard_size=shard_size, progress=not quiet,
                         **checkpoint_choice(checkpoints), **({} if seed is None else {"seed": seed}))
    state = "already complete" if summary.already_complete else f"{summary.seconds:.1f} s"
    typer.echo(f"exported {summary.rows} rows in {summary.shards} shard(s), {summary.bytes / 1e6:.1f} MB ({state}): "
               f"{summary.path}" + (f"\n{summary.note}" if summary.note else ""))
