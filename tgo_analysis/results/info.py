"""What a results store holds (`tgo info RESULTS`): dims, metrics, checkpoints, completeness.

Read from metadata and the done records only, never the numbers; the counterpart of
``tgo_store.store.info`` for the stores ``tgo analyze`` writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tgo_analysis import names as N
from tgo_store.store.json_attrs import decode_attrs


@dataclass
class ResultsInfo:
    url: str
    dims: dict[str, int]
    metrics: list[str]
    steps: list[int]
    units_done: int
    units_total: int
    multi_slab_done: int
    finished: bool  # the analysis wrote its closing attrs (analysis_summary)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.finished and self.units_done in (0, self.units_total)


def is_results_store(url: str, *, storage_options: dict | None = None) -> bool:
    """A Zarr group with no ``activations`` whose attrs say `tgo analyze` made it (``tgo_config``)."""
    import zarr

    from tgo_store.store.location import open_zarr_store

    try:
        group = zarr.open_group(open_zarr_store(url, read_only=True, storage_options=storage_options), mode="r")
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return False
    return "activations" not in group and "tgo_config" in group.attrs


def results_info(url: str) -> ResultsInfo:
    from tgo_analysis.results.store import done_items, done_units, open_results

    ds = open_results(url)
    steps = [int(s) for s in ds[N.CHECKPOINT].values] if N.CHECKPOINT in ds.coords else []
    n_layers = ds.sizes.get(N.LAYER, 0)
    return ResultsInfo(url=url, dims={str(k): int(v) for k, v in ds.sizes.items()},
                       metrics=sorted(str(v) for v in ds.data_vars), steps=steps,
                       units_done=len(done_units(url)), units_total=len(steps) * n_layers,
                       multi_slab_done=len(done_items(url)), finished="analysis_summary" in ds.attrs,
                       attrs=decode_attrs(ds.attrs))
