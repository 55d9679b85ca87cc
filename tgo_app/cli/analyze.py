"""`tgo analyze STORE --out RESULTS`: the metrics of SPEC sections 2-6, out of core.

The generic flags are spelled out here; every statistic's own options (``--id-samples``,
``--tangent-rank``, ...) become flags from their ``Option`` declarations, each in the help panel
of the statistic that declares it (or of the statistics that share it), so a new statistic with
options needs no edit here.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import typer

from tgo_analysis.statistics import declared_options, statistics
from tgo_analysis.statistics.base import Option, StatisticBase
from tgo_app.cli.app import app, bool_flag

IO, RUN = "Input and output", "Where it runs"
METAVARS = {int: "N", float: "X", str: "TEXT"}


def summary_of(stat: StatisticBase) -> str:
    """One line saying what a statistic measures: the first sentence of its module's docstring, without
    the SPEC reference and the leading list of its own names."""
    import re
    import sys

    doc = (sys.modules[type(stat).__module__].__doc__ or type(stat).__doc__ or "").strip()
    text = " ".join(doc.split("\n\n")[0].split())
    text = re.sub(r"\s*\(SPEC[^)]*\)", "", text)
    head, sep, rest = text.partition(": ")
    if sep and ("_" in head or head == stat.name):
        text = rest
    sentence = re.split(r"(?<=[a-z)])\. ", text, maxsplit=1)[0].rstrip(".")
    return sentence[:1].upper() + sentence[1:]


def metric_listing() -> str:
    """Every name --metrics accepts, by statistic: its one-line summary and the names that select it."""
    from tgo_analysis.results.selection import AFTER_REDUCTION

    stats = statistics()
    shared = {m for m in {m for s in stats for m in s.metrics}
              if sum(m in s.metrics for s in stats) > 1}  # group names several statistics answer
    width = max(len(s.name) for s in stats) + 2
    lines = ["--metrics takes all, or a comma-separated list of the names below: a statistic's name selects "
             "everything it computes, a metric name that metric (and what it needs).", ""]
    for stat in stats:
        names = [m for m in stat.metrics if m != stat.name and m not in shared]
        aliases = [a for a in stat.aliases if a not in names]
        lines.append(f"{stat.name:<{width}}{summary_of(stat)}")
        if names or aliases:
            lines.append(" " * width + ", ".join([*names, *aliases]))
    for group in sorted(shared):
        members = [s.name for s in stats if group in s.metrics]
        lines += ["", f"{group:<{width}}a group: {', '.join(members)}"]
    lines += ["", f"{'(after)':<{width}}computed from the results after the reduction: {', '.join(AFTER_REDUCTION)}"]
    return "\n".join(lines)


def _list_metrics(value: bool) -> None:
    if value:
        typer.echo(metric_listing())
        raise typer.Exit()


def option_panels() -> dict[str, str]:
    """Each declared option's help panel: the statistic that declares it, or the ones that share it."""
    owners: dict[str, list[str]] = {}
    for stat in statistics():
        for option in stat.options:
            owners.setdefault(option.name, []).append(stat.name)
    return {name: (f"Statistic: {found[0]}" if len(found) == 1 else f"Shared by {', '.join(found)}")
            for name, found in owners.items()}


def _flag(option: Option, panel: str) -> inspect.Parameter:
    """A typer option for one declared statistic option, in its statistic's help panel."""
    kind: Any = option.kind | None if option.optional or option.default is None else option.kind
    if option.kind is bool:
        info = bool_flag(option.flag, option.help, bool(option.default), panel)
    else:
        metavar = option.metavar or ("|".join(option.choices) if option.choices else METAVARS.get(option.kind, "VALUE"))
        info = typer.Option(option.flag, help=option.help, metavar=metavar, rich_help_panel=panel,
                            show_default=option.default is not None)
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=option.default,
                             annotation=Annotated[kind, info])


def analyze(
    store: Annotated[str, typer.Argument(metavar="STORE", show_default=False,
                                         help="activation store URL (any Zarr dataset with `activations`)")],
    out: Annotated[str, typer.Option(metavar="RESULTS", help="results store URL (Zarr)", rich_help_panel=IO)],
    metrics: Annotated[str, typer.Option(metavar="NAMES", rich_help_panel=IO,
                                         help="all, or comma-separated statistic and metric names "
                                              "(--list-metrics shows them)")] = "all",
    list_metrics: Annotated[bool, typer.Option("--list-metrics", is_eager=True, callback=_list_metrics,
                                               rich_help_panel=IO, help="print every statistic and metric name, "
                                               "then exit")] = False,
    overwrite: Annotated[bool, bool_flag("--overwrite", "replace an existing results store", False, IO)] = False,
    complete_only: Annotated[bool, bool_flag("--complete-only", "analyse only the checkpoints whose ingest is "
                                             "finished (without it an incomplete store is refused)", False, IO)] = False,
    quiet: Annotated[bool, bool_flag("--quiet", "no progress bar", False, IO)] = False,
    scheduler: Annotated[str | None, typer.Option(metavar="ADDRESS", rich_help_panel=RUN, show_default="threads "
                                                  "in this process", help="address of a dask.distributed scheduler")]
        = None,
    workers: Annotated[int | None, typer.Option(metavar="N", rich_help_panel=RUN, show_default="none",
                                                help="start a LocalCluster with N worker processes")] = None,
    memory_limit: Annotated[str | None, typer.Option(metavar="SIZE", rich_help_panel=RUN, show_default="dask's",
                                                     help="memory limit per LocalCluster worker, e.g. 6GB")] = None,
    memory_budget: Annotated[str | None, typer.Option(metavar="SIZE", rich_help_panel=RUN,
                                                      show_default="half the RAM, or of a worker's limit",
                                                      help="memory for the accumulators, e.g. 4GB; more passes "
                                                           "over the store when short")] = None,
    device: Annotated[str, typer.Option(metavar="DEVICE", rich_help_panel=RUN,
                                        help="cpu, or cuda[:N] for per-token spectra on a GPU (torch)")] = "cpu",
    seed: Annotated[int, typer.Option(metavar="N", rich_help_panel=RUN, help="seed of every subsample and draw")] = 0,
    **options: Any,
) -> None:
    """Compute spectra and geometry metrics; an interrupted run resumes where it stopped."""
    from tgo_analysis.analyze import analyze as run_analyze
    from tgo_analysis.analyze import summary_line
    from tgo_analysis.results.selection import parse_metrics
    from tgo_store.store.location import refuse_same_store
    from tgo_store.store.open import complete_dataset, open_store

    parse_metrics(metrics)  # a misspelled name is refused before the store is opened
    refuse_same_store(store, out)
    dataset = complete_dataset(open_store(store), store, complete_only=complete_only)
    result = run_analyze(dataset, metrics, out=out, overwrite=overwrite, seed=seed, scheduler=scheduler, workers=workers,
                         memory_budget=memory_budget, memory_limit=memory_limit, progress=not quiet, device=device,
                         **options)
    if not quiet:
        typer.echo(summary_line(result), err=True)
    typer.echo(f"results written to {out}")


_generic = [p for p in inspect.signature(analyze, eval_str=True).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
_panels = option_panels()
analyze.__signature__ = inspect.Signature([*_generic, *(_flag(o, _panels[o.name]) for o in declared_options().values())])
app.command()(analyze)
