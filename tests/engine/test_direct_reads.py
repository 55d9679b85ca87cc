"""The engine's direct zarr reads (issue 28: block reads at 0.8x zarr's rate): a block of a store slab is
read with one zarr read of its region (``engine.direct.zarr_region``), bit for bit what dask computes,
on every path production reads (parts, extras, other slabs, pickled sources), with damaged data still
named in one line; anything that is not a plain slice of a zarr array is computed through dask."""

from __future__ import annotations

import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from tests.support import ingest_kwargs, save_checkpoints
from tests.text_analysis.support import write_text_store
from tgo_analysis.engine import blocks
from tgo_analysis.engine.blocks import (
    LazySlab,
    UnitSource,
    compute_block,
    fed,
    read_block,
    read_chunk,
)
from tgo_analysis.engine.direct import zarr_region
from tgo_analysis.engine.units import WorkItem, item_source, unit_source
from tgo_analysis.statistics.base import Block
from tgo_store import ingest, open_store
from tgo_store.store.integrity import DamagedDataError


class _Gradients:
    needs_gradients = True


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, str]:
    """tgo stores of the tiny ViT at two checkpoints: float16 activations, and float32 with gradients."""
    root = tmp_path_factory.mktemp("direct")
    ckpts = save_checkpoints(root / "ckpt", [0, 10])
    out = {}
    for dtype, extra in (("float16", {}), ("float32", {"gradients": True})):
        out[dtype] = str(root / f"{dtype}.zarr")
        ingest(out[dtype], **ingest_kwargs(ckpts, dtype=dtype, samples_per_block=48, **extra))
    return out


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit for bit: dtype, shape and every byte."""
    return a.dtype == b.dtype and a.shape == b.shape and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def same_block(a: Block, b: Block) -> None:
    assert same(a.x, b.x) and a.tokens == b.tokens and same(a.samples, b.samples)
    for name in ("attention_mask", "token_id", "token_special", "gradients"):
        got, want = getattr(a, name), getattr(b, name)
        assert (got is None) == (want is None) and (got is None or same(got, want)), name
    assert len(a.others) == len(b.others) and all(same(g, w) for g, w in zip(a.others, b.others, strict=True))


def read_generic(monkeypatch, source: UnitSource, i: int) -> Block:
    """``read_chunk`` with every read computed through dask (no region found)."""
    with monkeypatch.context() as m:
        m.setattr(blocks, "zarr_region", lambda array, i: None)
        return read_chunk(source, i)


def all_direct(source: UnitSource) -> bool:
    arrays = [source.activations.array, *(v.array for v in source.extras.values()), *(o.array for o in source.others)]
    return all(zarr_region(a, i) is not None for a in arrays for i in range(a.numblocks[0]))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_direct_reads_equal_dask_bit_for_bit(monkeypatch, stores, dtype) -> None:
    """Whole units, sample parts, token parts and both: every block equals the one dask computes."""
    ds = open_store(stores[dtype])
    n = ds.sizes["sample"]
    whole = unit_source(ds, ds.activations, 1, 1, [])
    for source in (whole, whole.part(samples=(5, n - 7)), whole.part(tokens=(3, 11)),
                   whole.part(samples=(50, 140), tokens=(0, 1)), whole.part(samples=(48, 96))):
        source = fed(source)
        assert all_direct(source)
        for i in range(blocks.chunk_count(source)):
            direct = read_chunk(source, i)
            assert direct.x.dtype == np.dtype(dtype)
            same_block(direct, read_generic(monkeypatch, source, i))


def test_gradients_and_other_slabs_are_read_directly(monkeypatch, stores) -> None:
    ds = open_store(stores["float32"])
    source = fed(unit_source(ds, ds.activations, 0, 2, [_Gradients()]))
    assert set(source.extras) == {"gradients"} and all_direct(source)
    item = WorkItem("layer_checkpoints", 0, 1, ((0, 1), (1, 1), (1, 0)), ())
    lockstep = fed(item_source(ds, ds.activations, item).part(samples=(10, 100)))
    assert len(lockstep.others) == 2 and all_direct(lockstep)
    for src in (source, lockstep):
        for i in range(blocks.chunk_count(src)):
            same_block(read_chunk(src, i), read_generic(monkeypatch, src, i))


def test_per_position_coords_are_read_directly(monkeypatch, tmp_path) -> None:
    """A text store's (sample, token) coords (token ids, masks) are extras read beside the activations."""
    write_text_store(str(tmp_path / "text.zarr"))
    ds = open_store(str(tmp_path / "text.zarr"))
    source = fed(unit_source(ds, ds.activations, 1, 0, []).part(samples=(3, 45), tokens=(2, 17)))
    assert {"token_id", "attention_mask"} <= set(source.extras) and all_direct(source)
    for i in range(blocks.chunk_count(source)):
        same_block(read_chunk(source, i), read_generic(monkeypatch, source, i))


def test_a_pickled_source_still_reads_directly(stores) -> None:
    """Cluster tasks get their source pickled: the unpickled slab finds its region on the worker."""
    ds = open_store(stores["float16"])
    source = fed(unit_source(ds, ds.activations, 1, 0, []).part(samples=(20, 130)))
    again = pickle.loads(pickle.dumps(source))
    assert all_direct(again)
    for i in range(blocks.chunk_count(source)):
        same_block(read_chunk(again, i), read_chunk(source, i))


def test_what_is_not_a_plain_zarr_slice_is_computed_through_dask(stores, tmp_path) -> None:
    """In-memory data, a rechunk that merges chunks (the cluster's token view), arithmetic, strided
    slices and CF decoding (scale_factor) give no region; their blocks are still read right."""
    ds = open_store(stores["float16"])
    act = ds.activations
    x = act.values[1, 0]
    memory = ds.compute().chunk({"sample": 48})  # numpy-backed, as analyze chunks an in-memory dataset
    with warnings.catch_warnings():  # chunks that split the store's: the point of the case
        warnings.simplefilter("ignore", UserWarning)
        token_view = xr.open_zarr(stores["float16"], zarr_format=3,
                                  chunks={"checkpoint": 1, "layer": 1, "sample": 48, "token": 5, "feature": -1})
    cases = {
        "in memory": (fed(unit_source(memory, memory.activations, 1, 0, [])).activations.array, x),
        "token chunks merged": (fed(UnitSource(LazySlab(token_view.activations.data[1, 0]))).activations.array, x),
        "arithmetic": ((act.data[1, 0] * 2).astype(act.dtype), (x * 2).astype(x.dtype)),
        "strided": (act.data[1, 0][:, ::2], x[:, ::2]),
    }
    raw = x.astype(np.float32)
    scaled_path = str(tmp_path / "scaled.zarr")
    xr.Dataset({"activations": (act.dims, raw[None, None])}).chunk({"sample": 48}).to_zarr(
        scaled_path, zarr_format=3, encoding={"activations": {"scale_factor": 0.5}})
    scaled = xr.open_zarr(scaled_path, zarr_format=3).activations
    cases["scale_factor"] = (fed(UnitSource(LazySlab(scaled.data[0, 0]))).activations.array, raw)
    for name, (array, want) in cases.items():
        starts = np.cumsum((0, *array.chunks[0]))
        for i in range(array.numblocks[0]):
            assert zarr_region(array, i) is None, name
            np.testing.assert_array_equal(read_block(array, i), want[starts[i]:starts[i + 1]], err_msg=name)


def test_production_reads_take_the_direct_path(monkeypatch, stores) -> None:
    """An analysis of a tgo store reads every block directly: dask computes none of them."""
    from tgo_analysis import analyze

    expected = analyze(open_store(stores["float16"]), "mean_norm,eigenvalues", progress=False)

    def refuse(array, i):
        raise AssertionError("a block of a tgo store was computed through dask")

    monkeypatch.setattr(blocks, "compute_block", refuse)
    got = analyze(open_store(stores["float16"]), "mean_norm,eigenvalues", progress=False)
    for name in ("mean_norm", "eigenvalues"):
        np.testing.assert_array_equal(got[name].values, expected[name].values)


def _damage_nan(store: Path) -> None:
    zarr.open_array(str(store / "activations"), mode="r+")[1, 2, 50, 3, 7] = np.nan


def _damage_bits(store: Path) -> None:
    path = store / "activations/c/1/2/1/0/0"
    data = bytearray(path.read_bytes())
    data[101] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("damage", "words"), [(_damage_nan, "holds NaN/Inf"), (_damage_bits, "fails its checksum")])
def test_damaged_blocks_read_directly_raise_the_one_line_error(stores, tmp_path, damage, words) -> None:
    store = tmp_path / "damaged.zarr"
    shutil.copytree(stores["float16"], store)
    damage(store)
    ds = open_store(str(store))
    array = fed(unit_source(ds, ds.activations, 1, 2, [])).activations.array
    assert zarr_region(array, 1) is not None
    with pytest.raises(DamagedDataError) as direct:
        read_block(array, 1)
    with pytest.raises(DamagedDataError) as generic:
        compute_block(array, 1)
    line = str(direct.value)
    assert line == str(generic.value) and "\n" not in line
    assert "activations of checkpoint 1, layer 2, sample block 1" in line and words in line, line
    read_block(array, 0)  # the other blocks read as ever
