"""Refusals before a store is touched: foreign folders, read-only stores, another model or data.

Each check raises a one-line ``TgoError`` naming the problem and the fix, before any byte of
an existing store changes.
"""

from __future__ import annotations

from typing import Any

from tgo_store.errors import TgoError
from tgo_store.facts import LossSpec
from tgo_store.store import schema as S
from tgo_store.store.layout import StoreLayout
from tgo_store.store.metadata import existing_checkpoints
from tgo_store.store.record_keys import CREATING, RECORD_ROOT
from tgo_store.store.records import RecordStore


def check_same(group_attrs: dict, key: str, expected: Any, what: str, url: str) -> None:
    found = group_attrs.get(key)
    if found != expected:
        raise TgoError(f"store {url} holds another {what} ({short(found)} vs {short(expected)}); "
                       "ingest into a new store, or use the same options as the first run")


def short(value: Any) -> str:
    text = str(value)
    return text if len(text) < 80 else text[:77] + "..."


def refuse_foreign(store: Any, records: RecordStore, url: str) -> None:
    """Refuse, before anything is written (lock file and write probe included), a Zarr group
    that is not an activation store (written by plain xarray, or tgo's analysis results) or a
    folder of other files: tgo would mix its arrays into it, and the clean-up of a killed
    creation would delete what was there."""
    import zarr

    try:
        if records.get(CREATING) is not None:  # tgo's own half-made store: prepare starts it again
            return
        group = zarr.open_group(store, mode="r")
    except (FileNotFoundError, KeyError):
        group = None
    except (ValueError, TypeError, NotADirectoryError, PermissionError):  # refused later, with their own reasons
        return
    if group is not None:
        if S.ACTIVATIONS in group:
            return
        members = [f"{name} {tuple(node.shape)}" if hasattr(node, "shape") else f"{name}/"
                   for name, node in sorted(group.members())]
        held = f"arrays {', '.join(members[:4])}{' ...' if len(members) > 4 else ''}" if members else "no arrays"
        raise TgoError(f"{url} is a Zarr group but not a tgo activation store (it holds {held} and no "
                       f"'{S.ACTIVATIONS}'); it is left as it is: choose another --store URL, a new path for the tgo store")
    try:
        entries = [e.rstrip("/").rsplit("/", 1)[-1] for e in records.fs.ls(records.root, detail=False)]
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return
    others = sorted(e for e in entries if e != RECORD_ROOT)
    if others:
        raise TgoError(f"{url} is a folder holding other files ({', '.join(others[:3])}{' ...' if len(others) > 3 else ''}), "
                       "not a Zarr store; it is left as it is: choose another --store URL, a new path for the tgo store")


def existing_in(store: Any, records: RecordStore | None = None) -> list[tuple[int, str, str]]:
    """The checkpoints a finished store already holds (none for a new or half-made one); read only.
    With ``records``, each slot's step and sha256 as its commit records name them."""
    import zarr

    from tgo_store.store.commits import read_commits

    try:
        group = zarr.open_group(store, mode="r")
        commits = read_commits(records) if records is not None else None
        return existing_checkpoints(group, commits) if S.ACTIVATIONS in group else []
    except (FileNotFoundError, KeyError, ValueError, TypeError, IndexError):
        return []


def check_writable(records: RecordStore, url: str) -> None:
    """Write and delete a probe record before touching anything: a read-only store stays as it is.

    Opening a local store with mode="r+" does not check permissions, so without the probe the
    first failing write would come after metadata changes had started.
    """
    try:
        records.probe_writable()
    except (PermissionError, OSError) as exc:
        raise TgoError(f"store {url} is read-only ({type(exc).__name__}: {exc}); ingest into a writable location") from exc


def open_group(store: Any, url: str) -> Any:
    import zarr

    try:
        return zarr.open_group(store, mode="r+")
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise TgoError(f"store {url} is read-only ({exc}); ingest into a writable location") from exc
    except (ValueError, TypeError) as exc:
        if "read" in str(exc).lower() and "only" in str(exc).lower():
            raise TgoError(f"store {url} is read-only; ingest into a writable location") from exc
        raise TgoError(f"{url} is not a tgo store ({exc}); choose a new store URL") from exc


def check_compatible(group: Any, url: str, description: dict, dataset: dict, selection: Any, dtype: str) -> StoreLayout:
    """This run's model, data, dtype and (``selection``'s) layer_indices / token_indices are the store's; its layout."""
    attrs = dict(group.attrs)
    if S.ACTIVATIONS not in group:
        raise TgoError(f"{url} is a Zarr group without '{S.ACTIVATIONS}'; choose a new store URL")
    S.check_schema_version(attrs, f"store {url}")
    check_same(attrs, S.ATTR_MODEL, description, "model configuration", url)
    check_same(attrs, S.ATTR_DATASET, dataset, "dataset", url)
    act = group[S.ACTIVATIONS]
    if str(act.dtype) != dtype:
        raise TgoError(f"store {url} holds {act.dtype} activations, this run asks for {dtype}; use --dtype {act.dtype}")
    layers = [int(x) for x in group[S.LAYER][:]]
    tokens = [int(x) for x in group[S.TOKEN][:]]
    if layers != list(selection.layer_indices) or tokens != [int(t) for t in selection.token_indices]:
        raise TgoError(f"store {url} holds layers/tokens other than this run's selection; "
                       "use the --layers/--tokens of the first run or a new store")
    info = attrs.get("tgo_layout", {})
    return StoreLayout(int(info.get("samples_per_block", act.shards[2])),
                       int(info.get("tokens_per_chunk", act.chunks[3])), act.shape[3])


def check_same_loss(found: dict | None, loss: LossSpec | None, url: str) -> None:
    """Refuse appending gradients of another loss (or none) to a store, and the reverse."""
    expected = None if loss is None else loss.attr()
    if _identity(found) == _identity(expected):
        return
    if found is None:
        raise TgoError(f"store {url} was recorded without gradients; ingest with gradients into a new store")
    if expected is None:
        raise TgoError(f"store {url} records gradients ({found.get('kind')} loss); add --gradients to append to it")
    raise TgoError(f"store {url} holds gradients of another loss ({found.get('kind')}, "
                   f"{_short(found)} vs {_short(expected)}); use the same --loss/--mask-rate or a new store")


def _identity(attr: dict | None) -> dict | None:
    """What makes two losses the same (the description is prose and may be reworded)."""
    return None if attr is None else {k: v for k, v in attr.items() if k != "description"}


def _short(value: Any) -> str:
    text = str({k: v for k, v in value.items() if k != "description"})
    return text if len(text) < 80 else text[:77] + "..."
