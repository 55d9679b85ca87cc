"""`tgo analyze STORE --out RESULTS`: the metrics of SPEC sections 2-6, out of core.

The generic flags are spelled out here; every statistic's own options (``--id-samples``,
``--tangent-rank``, ...) become flags from their ``Option`` declarations, so a new statistic
with options needs no edit here.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import typer

from tgo_analysis.orchestration.cli.app import app
from tgo_analysis.statistics import declared_options
from tgo_analysis.statistics.base import Option
from tgo_store.errors import TgoError


def parse_fit_range(text: str) -> tuple[int, int]:
    try:
        first, last = (int(v) for v in text.replace("-", ":").split(":"))
    except ValueError as exc:
        raise TgoError(f"cannot read --fit-range '{text}'; use FIRST:LAST ranks, e.g. 11:100") from exc
    return first, last


def metric_listing() -> str:
    """Every name --metrics accepts, by statistic, with the result names that select it."""
    from tgo_analysis.results.selection import AFTER_REDUCTION
    from tgo_analysis.statistics import statistics

    lines = ["all: every statistic below that the store supports"]
    for stat in statistics():
        aliases = f" (also selected by {', '.join(stat.aliases)})" if stat.aliases else ""
        lines.append(f"{stat.name}: {', '.join(stat.metrics)}{aliases}")
    lines.append(f"after the reduction: {', '.join(AFTER_REDUCTION)}")
    return "\n".join(lines)


def _flag(option: Option) -> inspect.Parameter:
    """A typer option for one declared statistic option."""
    kind: Any = option.kind | None if option.optional or option.default is None else option.kind
    info = typer.Option(option.flag if option.kind is not bool else f"{option.flag}/--no-{option.flag[2:]}",
                        help=option.help)
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=option.default,
                             annotation=Annotated[kind, info])


def analyze(
    store: Annotated[str | None, typer.Argument(help="activation store URL (any Zarr dataset with `activations`)")] = None,
    out: Annotated[str | None, typer.Option(help="results store URL (Zarr)")] = None,
    metrics: Annotated[str, typer.Option(help="all, or a comma-separated list of metric names and groups "
                                              "(--list-metrics shows them)")] = "all",
    list_metrics: Annotated[bool, typer.Option(help="print every metric name and group, then exit")] = False,
    scheduler: Annotated[str | None, typer.Option(help="address of an existing dask.distributed scheduler")] = None,
    workers: Annotated[int | None, typer.Option(help="start a LocalCluster with this many worker processes")] = None,
    memory_limit: Annotated[str | None, typer.Option(help="memory limit per LocalCluster worker, e.g. 6GB")] = None,
    memory_budget: Annotated[str | None, typer.Option(help="memory for the accumulators, e.g. 4GB (default: half "
                                                       "the RAM, or of a Dask worker's limit); more passes when short")] = None,
    fit_range: Annotated[str, typer.Option(help="alpha fit ranks FIRST:LAST (inclusive, from 1)")] = "11:100",
    clusters: Annotated[int, typer.Option(help="number of alpha-trajectory clusters")] = 4,
    umap: Annotated[bool, typer.Option(help="embed alpha trajectories with UMAP before k-means")] = False,
    seed: Annotated[int, typer.Option(help="seed of every subsample and draw")] = 0,
    device: Annotated[str, typer.Option(help="cpu, or cuda[:N] for per-token spectra on a GPU (torch)")] = "cpu",
    overwrite: Annotated[bool, typer.Option(help="replace an existing results store")] = False,
    complete_only: Annotated[bool, typer.Option(help="leave out checkpoints whose ingest is unfinished or "
                                                     "was refused (default: refuse an incomplete store)")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    **options: Any,
) -> None:
    """Compute spectra and geometry metrics; an interrupted run resumes where it stopped."""
    if list_metrics:
        typer.echo(metric_listing())
        return
    if store is None or out is None:
        raise TgoError("tgo analyze needs a STORE and --out RESULTS; e.g. tgo analyze run.zarr --out results.zarr")
    from tgo_analysis.analyze import analyze as run_analyze
    from tgo_analysis.analyze import summary_line
    from tgo_store.store.location import refuse_same_store
    from tgo_store.store.open import complete_dataset, open_store

    refuse_same_store(store, out)
    dataset = complete_dataset(open_store(store), store, complete_only=complete_only)
    result = run_analyze(dataset, metrics, out=out, overwrite=overwrite, fit_range=parse_fit_range(fit_range),
                         n_clusters=clusters, use_umap=umap, seed=seed, scheduler=scheduler, workers=workers,
                         memory_budget=memory_budget, memory_limit=memory_limit, progress=not quiet, device=device,
                         **options)
    if not quiet:
        typer.echo(summary_line(result), err=True)
    typer.echo(f"results written to {out}")


_generic = [p for p in inspect.signature(analyze, eval_str=True).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
analyze.__signature__ = inspect.Signature([*_generic, *(_flag(o) for o in declared_options().values())])
app.command()(analyze)
