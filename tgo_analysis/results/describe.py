"""Attach what each result means to a results dataset (SPEC 9), from ``tgo_analysis.descriptions``.

Every data variable gets ``long_name``, ``description`` and ``units``; reason codes get CF
``flag_values`` / ``flag_meanings`` (the full sentences in ``comment``); the dimension coordinates
say what they count (``checkpoint`` is the training step). Attrs a statistic set itself win.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.descriptions import Description, description_of, flag_meaning

COORD_ATTRS = {
    N.CHECKPOINT: {"long_name": "training step", "units": "1",
                   "description": "training step of the checkpoint (its index in the store when the step is unknown)"},
    N.LAYER: {"long_name": "layer", "units": "1",
              "description": "0 = embedding output (after position embedding), i = output of block i"},
    N.TOKEN: {"long_name": "token position", "units": "1", "description": "position of the token in the sequence"},
    N.RANK: {"long_name": "eigenvalue rank", "units": "1", "description": "1 = the largest eigenvalue"},
}


def _unknown(name: str) -> Description:
    """A name no table describes (a plug-in that did not call ``describe``): say so, never stay silent."""
    return Description(name.replace("_", " "), f"{name}: written by a statistic that registered no description "
                       "(tgo_analysis.descriptions.describe)", "1")


def _variable_attrs(name: str) -> dict[str, object]:
    entry = description_of(name) or _unknown(name)
    attrs: dict[str, object] = {"long_name": entry.long_name, "description": entry.description, "units": entry.units}
    codes = entry.flag_codes()
    if codes:
        attrs["flag_values"] = np.array(sorted(codes), dtype=np.int8)
        attrs["flag_meanings"] = " ".join(flag_meaning(codes[k]) for k in sorted(codes))
        attrs["comment"] = "; ".join(f"{k}: {codes[k]}" for k in sorted(codes))
    return attrs


def describe_results(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with the SPEC 9 attrs on every data variable and on the dimension coordinates."""
    for name in ds.data_vars:
        ds[name].attrs = {**_variable_attrs(str(name)), **ds[name].attrs}
    for name, attrs in COORD_ATTRS.items():
        if name in ds.coords:
            ds[name].attrs = {**attrs, **ds[name].attrs}
    return ds
