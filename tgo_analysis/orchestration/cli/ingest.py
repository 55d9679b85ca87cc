"""`tgo ingest`: run a model at one or many checkpoints over a dataset and write the store."""

from __future__ import annotations

from typing import Annotated

import typer

from tgo_analysis.orchestration.cli.app import app
from tgo_analysis.orchestration.cli.options import parse_kwargs, parse_selection


@app.command()
def ingest(
    model: Annotated[str, typer.Option(help="timm model name (random init), package.module:factory, or hf:PATH "
                                            "(transformers folder or .gguf; hf:minilm, hf:smollm2)")],
    data: Annotated[str, typer.Option(help="image folder, .npy/.npz, sklearn:digits[:train|:test], synthetic:N, "
                                           "text:pydoc or text:URL (.txt, .jsonl, folder of .txt)")],
    store: Annotated[str, typer.Option(help="Zarr store URL: path, file://, memory://, s3://...")],
    checkpoints: Annotated[list[str] | None, typer.Option(
        help="checkpoint files, folders (checkpoint-1200/) or a glob at any fsspec URL; repeatable; "
             "hf: models without it record their own weights")] = None,
    seq_len: Annotated[int | None, typer.Option(help="text: tokens per sequence (default 128)")] = None,
    padding: Annotated[str | None, typer.Option(help="text: left or right = one padded document per sequence "
                                                     "(default: pack documents into full sequences)")] = None,
    samples: Annotated[int | None, typer.Option(help="text: keep a seeded subset of this many sequences")] = None,
    batch_size: Annotated[int, typer.Option(help="images per forward pass")] = 64,
    layers: Annotated[str | None, typer.Option(help="layers to keep, e.g. 0,3-6 (0 = embedding output)")] = None,
    tokens: Annotated[str | None, typer.Option(help="tokens to keep, e.g. 0-16")] = None,
    dtype: Annotated[str, typer.Option(help="storage dtype: float16 or float32")] = "float16",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    precision: Annotated[str, typer.Option(help="model compute dtype: float32, or float16/bfloat16 (GPU speed)")] = "float32",
    model_kwargs: Annotated[list[str] | None, typer.Option("--model-kwargs", help="model option key=value; repeatable")] = None,
    hook_modules: Annotated[str | None, typer.Option(help="for non-timm models: comma-separated module names to record")] = None,
    samples_per_block: Annotated[int | None, typer.Option(help="samples per shard (default: ~32 MB per layer)")] = None,
    gradients: Annotated[bool, typer.Option(help="also record ∂L/∂h of every recorded state (SPEC 5 `gradients`): "
                                                 "classification for labelled images, causal/masked LM for text")] = False,
    loss: Annotated[str | None, typer.Option(help="with --gradients: classification, causal_lm or masked_lm "
                                                  "(default: chosen from the model)")] = None,
    mask_rate: Annotated[float, typer.Option(help="masked_lm: share of valid positions masked")] = 0.15,
    mask_seed: Annotated[int, typer.Option(help="masked_lm: seed of the masked positions")] = 0,
    gradient_dtype: Annotated[str | None, typer.Option(help="with --gradients: their storage dtype, float32 "
                                                           "(default for a new store) or float16")] = None,
    allow_duplicate_weights: Annotated[bool, typer.Option(
        help="record a checkpoint whose weights (sha256) the list or the store already holds under another name")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Record every checkpoint x layer x token; re-running writes only what is missing."""
    from tgo_store.ingestion import ingest as run_ingest

    summary = run_ingest(
        store, model_spec=model, checkpoints=checkpoints[0] if checkpoints and len(checkpoints) == 1 else checkpoints,
        data_spec=data, layers=parse_selection(layers), tokens=parse_selection(tokens), dtype=dtype,
        batch_size=batch_size, samples_per_block=samples_per_block, model_kwargs=parse_kwargs(model_kwargs),
        hook_modules=hook_modules.split(",") if hook_modules else None, device=device, progress=not quiet,
        precision=precision, data_options={"seq_len": seq_len, "padding": padding, "samples": samples},
        gradients=gradients, loss=loss, mask_rate=mask_rate, mask_seed=mask_seed,
        gradient_dtype=gradient_dtype, allow_duplicate_weights=allow_duplicate_weights)
    typer.echo(f"{summary.url}: {summary.blocks_written} blocks written, {summary.blocks_skipped} already there; "
               f"{summary.samples} samples in {summary.seconds:.1f} s ({summary.samples_per_second:.1f} samples/s, "
               f"{summary.bytes / max(summary.seconds, 1e-9) / 1e6:.1f} MB/s)")
