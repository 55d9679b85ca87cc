"""`tgo ingest`: run a model at one or many checkpoints over a dataset and write the store."""

from __future__ import annotations

from typing import Annotated

import typer

from tgo_analysis.orchestration.cli.app import app
from tgo_analysis.orchestration.cli.options import parse_kwargs, parse_selection


@app.command()
def ingest(
    model: Annotated[str, typer.Option(help="timm model name (random init) or package.module:factory")],
    checkpoints: Annotated[list[str], typer.Option(help="checkpoint files or a glob at any fsspec URL; repeatable")],
    data: Annotated[str, typer.Option(help="image folder, .npy/.npz, sklearn:digits[:train|:test] or synthetic:N")],
    store: Annotated[str, typer.Option(help="Zarr store URL: path, file://, memory://, s3://...")],
    batch_size: Annotated[int, typer.Option(help="images per forward pass")] = 64,
    layers: Annotated[str | None, typer.Option(help="layers to keep, e.g. 0,3-6 (0 = embedding output)")] = None,
    tokens: Annotated[str | None, typer.Option(help="tokens to keep, e.g. 0-16")] = None,
    dtype: Annotated[str, typer.Option(help="storage dtype: float16 or float32")] = "float16",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    precision: Annotated[str, typer.Option(help="model compute dtype: float32, or float16/bfloat16 (GPU speed)")] = "float32",
    model_kwargs: Annotated[list[str] | None, typer.Option("--model-kwargs", help="model option key=value; repeatable")] = None,
    hook_modules: Annotated[str | None, typer.Option(help="for non-timm models: comma-separated module names to record")] = None,
    samples_per_block: Annotated[int | None, typer.Option(help="samples per shard (default: ~32 MB per layer)")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Record every checkpoint x layer x token; re-running writes only what is missing."""
    from tgo_store.ingest import ingest as run_ingest

    summary = run_ingest(
        store, model_spec=model, checkpoints=checkpoints[0] if len(checkpoints) == 1 else checkpoints,
        data_spec=data, layers=parse_selection(layers), tokens=parse_selection(tokens), dtype=dtype,
        batch_size=batch_size, samples_per_block=samples_per_block, model_kwargs=parse_kwargs(model_kwargs),
        hook_modules=hook_modules.split(",") if hook_modules else None, device=device, progress=not quiet,
        precision=precision)
    typer.echo(f"{summary.url}: {summary.blocks_written} blocks written, {summary.blocks_skipped} already there; "
               f"{summary.samples} samples in {summary.seconds:.1f} s ({summary.samples_per_second:.1f} samples/s, "
               f"{summary.bytes / max(summary.seconds, 1e-9) / 1e6:.1f} MB/s)")
