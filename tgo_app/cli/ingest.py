"""`tgo ingest`: run a model at one or many checkpoints over a dataset and write the store.

Its flags are the declarations of ``tgo_store.options.IngestOptions`` (help, spelling,
parser); only ``--store`` and ``--quiet``, which are not ingest options, are spelled here.
"""

from __future__ import annotations

import inspect
from dataclasses import MISSING
from typing import Annotated, Any

import typer

from tgo_app.cli.app import app, bool_flag
from tgo_store.options import Flag, IngestOptions, option_fields


def _parameter(flag: Flag, name: str, default: Any) -> inspect.Parameter:
    """A typer option for one declared flag (required when its option has no default)."""
    spelling = (flag.flag,) if flag.flag else ()
    if flag.kind is bool:
        info = bool_flag(flag.flag or f"--{name.replace('_', '-')}", flag.help, bool(default))
    else:
        info = typer.Option(*spelling, help=flag.help, metavar=metavar(flag.kind),
                            show_default=default is not None and default is not inspect.Parameter.empty)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[flag.kind, info])


def metavar(kind: Any) -> str:
    """One placeholder style for every verb: N, X, TEXT, and VALUE for a repeatable option."""
    return {int: "N", float: "X", str: "TEXT"}.get(kind, "VALUE")


def _declared() -> tuple[list[inspect.Parameter], list[inspect.Parameter]]:
    """The flags of required options, then the others, in declaration order."""
    required, optional = [], []
    for item in option_fields():
        for flag in item.metadata["cli"]:
            name = flag.name or item.name
            if item.default is MISSING and item.default_factory is MISSING:
                required.append(_parameter(flag, name, inspect.Parameter.empty))
            else:  # a dict option's flags (--model-kwargs, --seq-len ...) default to "not given"
                optional.append(_parameter(flag, name, None if item.default is MISSING else item.default))
    return required, optional


def options_from_flags(values: dict[str, Any]) -> IngestOptions:
    """The ``IngestOptions`` of parsed flag values (each flag's parser applied)."""
    fields: dict[str, Any] = {}
    for item in option_fields():
        for flag in item.metadata["cli"]:
            value = values[flag.name or item.name]
            value = flag.parse(value) if flag.parse else value
            if flag.key:
                fields.setdefault(item.name, {})[flag.key] = value
            else:
                fields[item.name] = value
    return IngestOptions(**fields)


def ingest(
    store: Annotated[str, typer.Option(metavar="STORE", help="Zarr store URL: path, file://, memory://, s3://...")],
    quiet: Annotated[bool, bool_flag("--quiet", "no progress bar")] = False,
    **values: Any,
) -> None:
    """Record every checkpoint x layer x token; re-running writes only what is missing."""
    from tgo_store.ingestion import ingest as run_ingest

    summary = run_ingest(store, options_from_flags(values), progress=not quiet)
    typer.echo(f"{summary.url}: {summary.blocks_written} blocks written, {summary.blocks_skipped} already there; "
               f"{summary.samples} samples in {summary.seconds:.1f} s ({summary.samples_per_second:.1f} samples/s, "
               f"{summary.bytes / max(summary.seconds, 1e-9) / 1e6:.1f} MB/s)")


_required, _optional = _declared()
_own = {name: p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for name, p in inspect.signature(ingest, eval_str=True).parameters.items()}
ingest.__signature__ = inspect.Signature([*_required, _own["store"], *_optional, _own["quiet"]])
app.command()(ingest)
