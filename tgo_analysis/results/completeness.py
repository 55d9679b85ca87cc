"""Whether a results store is complete, which (checkpoint, layer) units it lacks, and its schema.

A results store is complete when every unit of its analysis is written: each (checkpoint,
layer) of the per-unit statistics and every multi-slab unit (``engine.lockstep.WorkItem``) of
all its checkpoints. Each run records that expectation (``_tgo/expected.json``) beside the done
records it writes, so a reader (``tgo report``, ``tgo info``) can tell finished results from
those a killed, failed or still running analysis left, and name what is missing. Stores
written before this record existed carry none and are taken as they are.

Results carry ``tgo_schema`` (``RESULTS_SCHEMA``); a reader refuses one it does not know.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.results.store import done_items, done_units
from tgo_store.errors import TgoError
from tgo_store.store import schema as S
from tgo_store.store.record_keys import EXPECTED_WORK
from tgo_store.store.records import RecordStore

RESULTS_SCHEMA = 1  # what this tgo writes into results stores' tgo_schema attr
RESULTS_SCHEMAS = (RESULTS_SCHEMA,)  # what it reads
SHOWN = 6  # missing units named in a one-line message before "and k more"


def record_expected(out: str, n_checkpoints: int, n_layers: int, per_unit: bool, items: Iterable[Any]) -> None:
    """Write what a complete analysis into ``out`` holds: the unit grid, and each multi-slab
    unit's key with the (checkpoint, layer) cells it writes."""
    cells = {item.key: [[item.checkpoint, li] for _, li in item.slabs] if item.layer is None
             else [[item.checkpoint, item.layer]] for item in items}
    RecordStore(out).put(EXPECTED_WORK, {"checkpoints": int(n_checkpoints), "layers": int(n_layers),
                                         "units": bool(per_unit), "items": cells})


def missing_units(out: str, n_checkpoints: int, n_layers: int) -> list[tuple[int, int]] | None:
    """(checkpoint, layer) indices of ``out`` not yet written, sorted; None without an expectation
    record (results from before it existed, or not a results store tgo wrote)."""
    expected = RecordStore(out).get(EXPECTED_WORK)
    if not isinstance(expected, dict):
        return None
    missing: set[tuple[int, int]] = set()
    recorded = int(expected.get("checkpoints", 0))
    if recorded != n_checkpoints:  # a growth cut short: the checkpoints it added are unwritten
        missing |= {(ci, li) for ci in range(min(recorded, n_checkpoints), n_checkpoints) for li in range(n_layers)}
    if expected.get("units"):
        done = done_units(out)
        missing |= {(ci, li) for ci in range(n_checkpoints) for li in range(n_layers) if (ci, li) not in done}
    finished = done_items(out)
    for key, cells in (expected.get("items") or {}).items():
        if key not in finished:
            missing |= {(int(ci), int(li)) for ci, li in cells if ci < n_checkpoints}
    return sorted(missing)


def describe_missing(res: xr.Dataset | Any, missing: list[tuple[int, int]]) -> str:
    """'3 of 12 (checkpoint, layer) units are not written: (step 10, layer 1), ...' in one line
    (``res``: the results, or their group: anything with ``checkpoint`` and ``layer`` arrays)."""
    steps, layers = np.asarray(res[N.CHECKPOINT][...]), np.asarray(res[N.LAYER][...])
    named = [f"(step {steps[ci]}, layer {layers[li]})" for ci, li in missing[:SHOWN]]
    more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
    total = len(steps) * len(layers)
    return f"{len(missing)} of {total} (checkpoint, layer) units are not written: {', '.join(named)}{more}"


def check_results_schema(attrs: dict, where: str) -> None:
    """Refuse results written with a schema this tgo does not read (or an unreadable one)."""
    version = attrs.get(S.ATTR_SCHEMA)
    if version is None:
        return
    try:
        known = int(version) in RESULTS_SCHEMAS
    except (TypeError, ValueError):
        known = False
    if not known:
        raise TgoError(f"{where} holds results of tgo schema {version!r}; this tgo reads results schemas "
                       f"{', '.join(map(str, RESULTS_SCHEMAS))}: use the tgo version that wrote them, or run "
                       "`tgo analyze` again into a new --out")


def is_results(attrs: dict) -> bool:
    """Whether a store's root attrs are those of a results store (`tgo analyze` writes tgo_config)."""
    return "tgo_config" in attrs


def results_lines(url: str) -> list[str] | None:
    """What ``tgo info`` says of a results store: what it holds and whether it is complete; None
    when ``url`` is not one (an activation store, or nothing)."""
    import zarr

    try:  # each array's own metadata: a growth cut short leaves the consolidated copy behind
        group = zarr.open_group(url, mode="r", use_consolidated=False)
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return None
    attrs = dict(group.attrs)
    if not is_results(attrs) or N.CHECKPOINT not in group or N.LAYER not in group:
        return None
    check_results_schema(attrs, url)
    steps = np.asarray(group[N.CHECKPOINT][...]).tolist()
    variables = sorted(name for name, array in group.arrays() if array.ndim >= 2)
    lines = [f"{url}  results of `tgo analyze` (tgo_schema {attrs.get(S.ATTR_SCHEMA, 'not recorded')})",
             f"checkpoints {len(steps)} (steps {steps[0]} to {steps[-1]}), layers {group[N.LAYER].shape[0]}",
             f"variables {', '.join(variables)}"]
    missing = missing_units(url, len(steps), group[N.LAYER].shape[0])
    if missing is None:
        lines.append("completeness not recorded (results written before tgo recorded it)")
    elif missing:
        lines.append(f"incomplete: {describe_missing(group, missing)}; re-run the same `tgo analyze` to finish")
    else:
        lines.append("complete")
    return lines
