"""`tgo analyze STORE --out RESULTS`: the metrics of SPEC section 3, out of core."""

from __future__ import annotations

from typing import Annotated

import typer

from tgo_analysis.names import TANGENT
from tgo_analysis.orchestration.cli.app import app
from tgo_store.errors import TgoError


def parse_fit_range(text: str) -> tuple[int, int]:
    try:
        first, last = (int(v) for v in text.replace("-", ":").split(":"))
    except ValueError as exc:
        raise TgoError(f"cannot read --fit-range '{text}'; use FIRST:LAST ranks, e.g. 11:100") from exc
    return first, last


@app.command()
def analyze(
    store: Annotated[str, typer.Argument(help="activation store URL (any Zarr dataset with `activations`)")],
    out: Annotated[str, typer.Option(help="results store URL (Zarr)")],
    metrics: Annotated[str, typer.Option(help="all, or a comma-separated list of metric names")] = "all",
    scheduler: Annotated[str | None, typer.Option(help="address of an existing dask.distributed scheduler")] = None,
    workers: Annotated[int | None, typer.Option(help="start a LocalCluster with this many worker processes")] = None,
    memory_limit: Annotated[str | None, typer.Option(help="memory limit per LocalCluster worker, e.g. 6GB")] = None,
    memory_budget: Annotated[str | None, typer.Option(help="memory for the accumulators, e.g. 4GB (default: half "
                                                       "the RAM, or of a Dask worker's limit); more passes when short")] = None,
    fit_range: Annotated[str, typer.Option(help="alpha fit ranks FIRST:LAST (inclusive, from 1)")] = "11:100",
    id_samples: Annotated[int, typer.Option(help="samples used for the TwoNN intrinsic dimension")] = 2000,
    clusters: Annotated[int, typer.Option(help="number of alpha-trajectory clusters")] = 4,
    umap: Annotated[bool, typer.Option(help="embed alpha trajectories with UMAP before k-means")] = False,
    all_tokens: Annotated[str, typer.Option(help="all-token spectrum: auto, gram, randomized or off")] = "auto",
    svd_rank: Annotated[int, typer.Option(help="rank of the randomized SVD for all tokens")] = 200,
    power_iters: Annotated[int, typer.Option(help="power iterations of the randomized SVD (>= 4)")] = 4,
    device: Annotated[str, typer.Option(help="cpu, or cuda[:N] for per-token spectra on a GPU (torch)")] = "cpu",
    exclude_special: Annotated[bool, typer.Option(help="pooled/frequency: leave special tokens (BOS, CLS, SEP...) out")] = False,
    exclude_first: Annotated[bool, typer.Option(help="pooled/frequency: leave the first position of each sequence out")] = False,
    pooled_id_points: Annotated[int, typer.Option(help="pooled positions (seeded subsample) for intrinsic_dimension_pooled")] = 4096,
    frequency_buckets: Annotated[int, typer.Option(help="log-spaced buckets of vocab_count for the frequency metrics")] = 10,
    tangent_rank: Annotated[int | None, typer.Option(help="tangent: semi-NMF rank r (default min(16, D/4))")] = None,
    tangent_subsample: Annotated[int, typer.Option(help="tangent: valid positions in the semi-NMF fit")] = 4096,
    tangent_iterations: Annotated[int, typer.Option(help="tangent: semi-NMF iteration cap")] = 500,
    tangent_tolerance: Annotated[float, typer.Option(help="tangent: stop at this relative objective decrease")] = 1e-6,
    tangent_draws: Annotated[int, typer.Option(help="tangent: seeded control subspaces per (checkpoint, layer)")] = 32,
    tangent_seed: Annotated[int, typer.Option(help="tangent: seed of the subsample and the semi-NMF start")] = 0,
    overwrite: Annotated[bool, typer.Option(help="replace an existing results store")] = False,
    complete_only: Annotated[bool, typer.Option(help="leave out checkpoints whose ingest is unfinished or "
                                                     "was refused (default: refuse an incomplete store)")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Compute spectra and geometry metrics; an interrupted run resumes where it stopped."""
    from tgo_analysis.analyze import analyze as run_analyze
    from tgo_analysis.reductions.frequency import text_params
    from tgo_store.open import complete_dataset, open_store
    from tgo_store.writer import refuse_same_store

    refuse_same_store(store, out)
    dataset = complete_dataset(open_store(store), store, complete_only=complete_only)
    run_analyze(dataset, metrics, out=out, overwrite=overwrite, fit_range=parse_fit_range(fit_range),
                id_samples=id_samples, n_clusters=clusters, use_umap=umap, all_tokens=all_tokens,
                svd_rank=svd_rank, power_iters=power_iters, scheduler=scheduler, workers=workers,
                memory_budget=memory_budget,
                memory_limit=memory_limit, progress=not quiet, device=device,
                params={**text_params(exclude_special, exclude_first, pooled_id_points, frequency_buckets),
                        TANGENT: {"rank": tangent_rank, "subsample": tangent_subsample,
                                  "iterations": tangent_iterations, "tolerance": tangent_tolerance,
                                  "control_draws": tangent_draws, "seed": tangent_seed}})
    typer.echo(f"results written to {out}")
