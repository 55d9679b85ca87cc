"""Results stores describe themselves and leave xarray for netCDF (SPEC 9): every data variable has
long_name, description and units from the one table (tgo_analysis.descriptions), reason codes carry CF
flags, and `xr.open_zarr(results).to_netcdf(path)` works; tgo reads its nested attrs back as written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import tgo_analysis
from tests.support import ingest_kwargs, save_checkpoints
from tests.text_analysis.support import write_text_store
from tgo_analysis.descriptions import DESCRIPTIONS, describe, description_of, flag_meaning
from tgo_analysis.kernels.metrics import METRIC_REASONS
from tgo_analysis.results.store import open_results
from tgo_store.store.json_attrs import JSON_ATTRS, decode_attrs, encode_attrs


def _image_store(root) -> str:
    from tgo_store.ingestion import ingest

    ckpts = save_checkpoints(root / "ckpt", [0, 10])
    url = str(root / "image.zarr")
    ingest(url, **ingest_kwargs(ckpts, data_spec="synthetic:64", dtype="float32", gradients=True))
    return url


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["image", "text"])
def test_results_store_is_self_describing_netcdf(kind, tmp_path) -> None:
    if kind == "image":
        store = _image_store(tmp_path)
    else:
        store = str(tmp_path / "text.zarr")
        write_text_store(store)
    out = str(tmp_path / "results.zarr")
    options = {"tangent_rank": 4, "tangent_bootstrap": 4} if kind == "image" else {}
    returned = tgo_analysis.analyze(xr.open_zarr(store), "all", out=out, progress=False, fit_range=(2, 8), **options)

    plain = xr.open_zarr(out)  # what any xarray user sees, no tgo code
    assert len(plain.data_vars) > 30
    for name, var in plain.data_vars.items():
        assert description_of(str(name)) is not None, f"{name} has no entry in tgo_analysis.descriptions"
        for attr in ("long_name", "description", "units"):
            assert isinstance(var.attrs.get(attr), str) and var.attrs[attr], (name, attr)
    reason = plain["metric_reason"].attrs
    assert list(reason["flag_values"]) == sorted(METRIC_REASONS)
    assert reason["flag_meanings"].split() == [flag_meaning(METRIC_REASONS[k]) for k in sorted(METRIC_REASONS)]
    assert plain["checkpoint"].attrs["long_name"] == "training step"
    assert plain["checkpoint"].values.tolist() == ([0, 10] if kind == "image" else plain["checkpoint"].values.tolist())

    path = tmp_path / "results.nc"
    plain.to_netcdf(path, engine="h5netcdf")
    back = xr.open_dataset(path, engine="h5netcdf")
    for name in plain.data_vars:  # the numbers and the descriptions survive the trip
        np.testing.assert_array_equal(back[name].values, plain[name].values)
        assert back[name].attrs["description"] == plain[name].attrs["description"]
    assert decode_attrs(back.attrs)["tgo_config"] == returned.attrs["tgo_config"]

    # tgo reads the nested attrs back as they were written (tgo_config, summaries, lists, booleans)
    assert open_results(out).attrs == returned.attrs
    assert isinstance(returned.attrs["tgo_config"], dict) and isinstance(returned.attrs["package_versions"], dict)
    assert isinstance(plain.attrs["tgo_config"], str) and json.loads(plain.attrs["tgo_config"])["metrics"]


def test_attrs_codec_round_trip() -> None:
    attrs = {"s": "[not json]", "n": 3, "f": 0.5, "nums": [11, 100], "d": {"a": [1, "x"]}, "b": False,
             "none": None, "empty": [], "strs": ["a", "b"], "np": np.int64(7)}
    encoded = encode_attrs(attrs)
    assert all(isinstance(v, str | int | float | list) for v in encoded.values())
    assert encoded["nums"] == [11, 100] and encoded["s"] == "[not json]" and isinstance(encoded["d"], str)
    assert set(encoded[JSON_ATTRS].split()) == {"d", "b", "none", "empty", "strs"}
    decoded = decode_attrs(encoded)
    assert decoded == {**attrs, "np": "7"}  # numpy scalars become JSON text, as the attrs always did
    assert decode_attrs({"d": {"a": 1}}) == {"d": {"a": 1}}  # results written before the encoding


def test_suffix_rules_and_plugin_descriptions() -> None:
    assert "N(0, I_D)" in description_of("alpha_pooled_isotropic").description
    assert description_of("metric_reason_pooled").flag_codes() == METRIC_REASONS
    assert description_of("no_such_name") is None
    try:
        describe("plugin_metric", "plug-in metric", "what the plug-in computes", "activation")
        assert description_of("plugin_metric_all").units == "activation"
    finally:
        DESCRIPTIONS.pop("plugin_metric", None)
