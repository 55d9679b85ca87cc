"""The results dataset's shape before anything is computed: every requested variable, all-NaN.

Built from the chosen statistics' ``variables``, prefixed with (checkpoint, layer); it creates
the output store's metadata, and in-memory results are filled into a copy of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.statistics.base import Context, StatisticBase
from tgo_store.store import schema as S


@dataclass(frozen=True)
class ResultCoords:
    """Coordinates of the results (from the activation store) and the shared rank length."""

    checkpoints: np.ndarray
    layers: np.ndarray
    tokens: np.ndarray
    n_rank: int


def result_coords(act: xr.DataArray, n_rank: int) -> ResultCoords:
    coords = {d: (np.asarray(act[d].values) if d in act.coords else np.arange(act.sizes[d])) for d in S.DIMS}
    return ResultCoords(coords[S.CHECKPOINT], coords[S.LAYER], coords[S.TOKEN], n_rank)


def build_template(act: xr.DataArray, rc: ResultCoords, stats: Sequence[StatisticBase], ctx: Context) -> xr.Dataset:
    """An all-NaN (int8 -1 for reason codes) dask-backed dataset with every requested variable."""
    import dask.array as da

    c, n_layers = len(rc.checkpoints), len(rc.layers)
    data_vars = {}
    for var in (v for s in stats for v in s.variables(ctx)):
        dims, shape = (N.CHECKPOINT, N.LAYER, *var.dims), (c, n_layers, *var.shape)
        chunks = tuple(1 if d in (N.CHECKPOINT, N.LAYER) else s for d, s in zip(dims, shape, strict=True))
        # a fixed name: tokenizing ten arrays of NaN costs 50 ms and buys nothing here
        data_vars[var.name] = (dims, da.full(shape, var.fill, dtype=var.dtype, chunks=chunks,
                                             name=f"tgo-template-{var.name}"))
    coords: dict[str, Any] = {N.CHECKPOINT: rc.checkpoints, N.LAYER: rc.layers, N.TOKEN: rc.tokens,
                              N.RANK: np.arange(1, rc.n_rank + 1)}
    if any(N.TOKEN_OTHER in dims for dims, _ in data_vars.values()):
        coords[N.TOKEN_OTHER] = rc.tokens
    if any(N.LAYER_OTHER in dims for dims, _ in data_vars.values()):
        coords[N.LAYER_OTHER] = rc.layers
    for stat in stats:  # coordinates of a statistic's own dims (rank_pooled, frequency_bucket, ...)
        coords.update(stat.coords(ctx))
    for name, dim in S.COORDS.items():
        if name in act.coords and dim in (N.CHECKPOINT, N.LAYER, N.TOKEN):
            values = np.asarray(act[name].values)
            coords[name] = (dim, np.array([str(v) for v in values], dtype=np.dtypes.StringDType())
                            if values.dtype.kind in "OUT" else values)
    return xr.Dataset(data_vars, coords=coords)
