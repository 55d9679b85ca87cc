"""`tgo export --format hf-datasets` and `--format saelens` stream: a layer whose float32 export is
four times the memory budget is written under a limit that binds (reading that layer whole, or one
shard holding it, fails under it)."""

from __future__ import annotations

import textwrap

import datasets
import numpy as np
import pytest

from tests.loader.test_loader_memory import BUDGET_MB, D, N, T, write_layer
from tests.support import run_memory_probe

PROBE = textwrap.dedent("""
    import json, resource, sys
    import datasets, numpy as np, pyarrow, torch, xarray, zarr
    from tgo_store.loader.export import export_hf_datasets
    def status(key):
        return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) * 1024
    base_rss, budget = status("VmRSS"), int(sys.argv[2]) * 2**20
    limit = status("VmData") + budget  # every private writable mapping counts (heap, mmap'd buffers, stacks)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    if "WHOLE":
        # the layer at once: more than the budget (read on this thread: under the limit a dask
        # worker thread may fail to start before any read fails, a RuntimeError, not a MemoryError)
        xarray.open_zarr(sys.argv[1]).activations.load(scheduler="synchronous")
    summary = export_hf_datasets(sys.argv[1], 0, sys.argv[1] + ".arrow", shard_size="64MB")
    print(json.dumps({"rows": summary.rows, "shards": summary.shards, "bytes": summary.bytes,
                      "peak_mb": (status("VmHWM") - base_rss) / 2**20}))
""")


@pytest.mark.slow
def test_an_export_larger_than_the_budget_stays_inside_it(tmp_path) -> None:
    path = str(tmp_path / "layer.zarr")
    reference = write_layer(path)
    export_mb = N * T * D * 4 / 2**20
    assert export_mb >= BUDGET_MB * 4
    bounded = run_memory_probe(PROBE.replace('"WHOLE"', "False"), path, BUDGET_MB)
    assert bounded["rows"] == N * T and bounded["shards"] > 1 and bounded["bytes"] > export_mb * 2**20
    assert bounded["peak_mb"] < BUDGET_MB
    back = datasets.load_from_disk(path + ".arrow").with_format("numpy", columns=["activations"])
    total = sum(float(b["activations"][:, 0].astype(np.float64).sum()) for b in back.iter(batch_size=65536))
    assert total == pytest.approx(reference, rel=1e-9, abs=1e-6)  # every value, once, exactly converted
    with pytest.raises(AssertionError, match="MemoryError"):  # the limit binds
        run_memory_probe(PROBE.replace('"WHOLE"', "True"), path, BUDGET_MB)


SAELENS_PROBE = PROBE.replace("from tgo_store.loader.export import export_hf_datasets",
                              "from tgo_store.loader.export import export").replace(
    'export_hf_datasets(sys.argv[1], 0, sys.argv[1] + ".arrow", shard_size="64MB")',
    'export("saelens", sys.argv[1], 0, sys.argv[1] + ".arrow", shard_size=SHARD)')


def write_sequences(path: str) -> float:
    """The memory test's layer as a packed text store would hold it: token ids, every position valid,
    layer 0 named for the embedding (so its hook is blocks.0.hook_resid_pre)."""
    import dask.array as da
    import xarray as xr

    data = da.random.RandomState(0).standard_normal((1, 1, N, T, D), chunks=(1, 1, 1024, T, D)).astype("float16")
    ids = np.random.default_rng(0).integers(0, 50000, size=(N, T), dtype=np.int32)
    xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), data)},
               coords={"token_id": (("sample", "token"), ids), "layer_name": ("layer", np.array(["model.embed_tokens"], dtype=object))}
               ).to_zarr(path, mode="w", zarr_format=3, encoding={"activations": {"compressors": None}})
    return float(data[0, 0, :, :, 0].astype("float64").sum().compute())


@pytest.mark.slow
def test_a_saelens_export_larger_than_the_budget_stays_inside_it(tmp_path) -> None:
    path = str(tmp_path / "sequences.zarr")
    reference = write_sequences(path)
    bounded = run_memory_probe(SAELENS_PROBE.replace('"WHOLE"', "False").replace("SHARD", '"16MB"'), path,
                               BUDGET_MB)
    assert bounded["rows"] == N and bounded["shards"] > 1 and bounded["bytes"] > N * T * D * 4
    assert bounded["peak_mb"] < BUDGET_MB, bounded
    back = datasets.load_from_disk(path + ".arrow").with_format("numpy", columns=["blocks.0.hook_resid_pre"])
    total = sum(float(b["blocks.0.hook_resid_pre"][:, :, 0].astype(np.float64).sum())
                for b in back.iter(batch_size=2048))
    assert total == pytest.approx(reference, rel=1e-9, abs=1e-6)  # every value, once, exactly converted
    import shutil

    shutil.rmtree(path + ".arrow")
    whole = N * T * D * 4 // 2**20 + 8  # one shard holding the whole layer: the limit binds
    with pytest.raises(AssertionError, match="MemoryError"):
        run_memory_probe(SAELENS_PROBE.replace('"WHOLE"', "False").replace("SHARD", f'"{whole}MB"'), path,
                         BUDGET_MB)
