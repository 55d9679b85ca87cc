"""Damaged stores (issue 30): each kind of damage is found by `tgo verify` and by reading, never
read as numbers, and the same ingest repairs it into a store byte-identical to a clean one.

Damage: a deleted shard (reads as zeros), a flipped exponent bit (fails the chunk's crc32c), a
truncated shard (fails the shard index's crc32c), a NaN written through zarr (valid checksum,
a value ingest never writes), an edited dtype in the consolidated metadata (same item size:
silently wrong numbers), swapped `checkpoint` or `checkpoint_sha256` coordinate values
(mislabelled results; the commit records say what each slot was written from).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import zarr

from tests.support import TINY_VIT, TINY_VIT_SPEC, run_cli, save_checkpoints, store_bytes
from tgo_store import ingest
from tgo_store.store.integrity import DamagedDataError
from tgo_store.store.verify import verify_store

KWARGS = {"model_spec": TINY_VIT_SPEC, "model_kwargs": dict(TINY_VIT), "data_spec": "synthetic:8",
          "batch_size": 4, "samples_per_block": 4, "device": "cpu", "progress": False}
SHARD = "activations/c/{c}/{l}/{b}/0/0"  # (checkpoint, layer, sample block, token shard, feature)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("damage")
    ckpts = save_checkpoints(root / "ckpt", [0, 5])
    store = root / "clean.zarr"
    ingest(str(store), checkpoints=ckpts, **KWARGS)
    return {"root": root, "ckpts": ckpts, "store": store, "bytes": store_bytes(store)}


def delete_shard(store: Path) -> None:
    (store / SHARD.format(c=0, l=1, b=0)).unlink()


def flip_bit(store: Path) -> None:
    path = store / SHARD.format(c=1, l=0, b=1)
    data = bytearray(path.read_bytes())
    data[101] ^= 0x40  # an exponent bit of a float16 inside the first inner chunk
    path.write_bytes(bytes(data))


def truncate_shard(store: Path) -> None:
    path = store / SHARD.format(c=1, l=2, b=0)
    path.write_bytes(path.read_bytes()[:-7])


def write_nan(store: Path) -> None:
    array = zarr.open_array(str(store / "activations"), mode="r+")  # zarr writes a valid checksum
    array[0, 2, 5, 3, 7] = np.nan


def edit_dtype(store: Path) -> None:
    meta = json.loads((store / "zarr.json").read_text())
    meta["consolidated_metadata"]["metadata"]["activations"]["data_type"] = "int16"
    (store / "zarr.json").write_text(json.dumps(meta))


def swap_checkpoints(store: Path) -> None:
    steps = zarr.open_array(str(store / "checkpoint"), mode="r+")
    steps[:] = steps[:][::-1]


def swap_sha256(store: Path) -> None:
    shas = zarr.open_array(str(store / "checkpoint_sha256"), mode="r+")
    shas[:] = shas[:][::-1]


DAMAGE: dict[str, tuple[Callable[[Path], None], tuple[str, ...], int]] = {
    # name: (damage, words the one-line read error names, blocks the re-ingest rewrites)
    "deleted-shard": (delete_shard, ("checkpoint 0", "sample block 0", "missing (layers 1)"), 1),
    "flipped-bit": (flip_bit, ("checkpoint 1, layer 0, sample block 1", "checksum"), 1),
    "truncated-shard": (truncate_shard, ("checkpoint 1, layer 2, sample block 0", "checksum"), 1),
    "nan": (write_nan, ("checkpoint 0, layer 2, sample block 1", "NaN/Inf"), 1),
    "edited-dtype": (edit_dtype, ('activations data_type "int16"', '"float16"'), 0),
    "swapped-checkpoints": (swap_checkpoints, ("checkpoint 0", "says step 5", "written as step 0"), 0),
    "swapped-sha256": (swap_sha256, ("checkpoint 0", "checkpoint_sha256 coordinate says"), 0),
}


@pytest.fixture(params=sorted(DAMAGE))
def damaged(request, clean, tmp_path) -> tuple[str, Path]:
    store = tmp_path / "store.zarr"
    shutil.copytree(clean["store"], store)
    DAMAGE[request.param][0](store)
    assert store_bytes(store) != clean["bytes"]
    return request.param, store


def test_verify_lists_the_damage_and_exits_non_zero(damaged, capsys) -> None:
    name, store = damaged
    words = DAMAGE[name][1]
    result = verify_store(str(store))
    assert not result.ok and result.checksums
    assert any(all(w in d.line() for w in words) for d in result.damage), [d.line() for d in result.damage]
    done = run_cli(["verify", str(store)], capsys)
    assert done.returncode == 1
    lines = done.stdout.strip().splitlines()
    assert len(lines) == len(result.damage) + 1 and "re-run the `tgo ingest`" in lines[-1], done.stdout


def test_an_analysis_fails_in_one_named_line(damaged, tmp_path, capsys) -> None:
    name, store = damaged
    done = run_cli(["analyze", str(store), "--out", str(tmp_path / "m.zarr"), "--metrics", "mean_norm",
                    "--quiet"], capsys)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "bug in tgo" not in lines[0] and f"tgo verify {store}" in lines[0], lines[0]
    assert all(w in lines[0] for w in DAMAGE[name][1]), lines[0]
    assert len(lines[0]) < 600


def test_the_same_ingest_repairs_it_byte_for_byte(damaged, clean) -> None:
    name, store = damaged
    summary = ingest(str(store), checkpoints=clean["ckpts"], **KWARGS)
    assert summary.blocks_written == DAMAGE[name][2]
    assert store_bytes(store) == clean["bytes"]
    assert verify_store(str(store)).ok


def test_the_training_loader_names_a_block_that_fails_its_checksum(clean, tmp_path) -> None:
    from tgo_store.loader import ActivationLoader

    store = tmp_path / "store.zarr"
    shutil.copytree(clean["store"], store)
    flip_bit(store)
    loader = ActivationLoader(str(store), layer=0, checkpoint=1, batch_size=8, shuffle=False)
    with pytest.raises(DamagedDataError, match=r"checkpoint 1, layer 0, sample block 1 .* fails its checksum"):
        list(loader)


def test_a_clean_store_verifies(clean, capsys) -> None:
    done = run_cli(["verify", str(clean["store"])], capsys)
    assert done.returncode == 0 and "4 committed block(s)" in done.stdout and "no damage" in done.stdout


def test_a_store_from_before_checksums_stays_readable_and_verifiable(clean, tmp_path) -> None:
    """Old stores: data chunks without crc32c. They open, verify (no checksums to check) and analyse."""
    import tgo_store.store.metadata as metadata
    from tgo_analysis import analyze
    from tgo_store import open_store

    store = tmp_path / "old.zarr"
    with mock.patch.object(metadata, "DATA_CHECKSUMS", False):  # a store as tgo wrote it before the codec
        ingest(str(store), checkpoints=clean["ckpts"], **KWARGS)
    result = verify_store(str(store))
    assert result.ok and not result.checksums
    old, new = open_store(str(store)), open_store(str(clean["store"]))
    np.testing.assert_array_equal(old.activations.values, new.activations.values)
    a = analyze(old, "mean_norm", progress=False)
    b = analyze(new, "mean_norm", progress=False)
    np.testing.assert_array_equal(a.mean_norm.values, b.mean_norm.values)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_the_nan_inf_check_agrees_with_numpy(dtype) -> None:
    """The bit test on the exponent against numpy's isfinite, on strided views, subnormals and the largest values."""
    from tgo_store.store.integrity import non_finite

    rng = np.random.default_rng(1)
    info = np.finfo(dtype)
    for trial in range(60):
        x = (rng.standard_normal((6, 5, 4)) * 10.0 ** rng.integers(-3, 3)).astype(dtype)
        x.flat[rng.integers(x.size)] = [info.max, -info.max, info.tiny / 4, 0.0, np.nan, np.inf, -np.inf][trial % 7]
        for view in (x, x[:, ::2], x[1:, :, 1::3]):
            assert non_finite(view) == (not np.isfinite(view).all()), (trial, view)
    assert not non_finite(np.arange(5)) and not non_finite(np.zeros(0, dtype))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_the_nan_inf_check_reaches_every_slice(dtype) -> None:
    """A block longer than the check's slice: a NaN or Inf in any slice (the last, partial one too) is found."""
    from tgo_store.store.integrity import CHECK_SLICE, non_finite

    x = np.random.default_rng(2).standard_normal(3 * CHECK_SLICE + 17).astype(dtype)
    assert not non_finite(x)
    for at in (0, CHECK_SLICE - 1, CHECK_SLICE, 2 * CHECK_SLICE + 5, x.size - 1):
        for bad in (np.nan, -np.inf):
            y = x.copy()
            y[at] = bad
            assert non_finite(y) == (not np.isfinite(y).all()) is True, (at, bad)
            assert non_finite(y.reshape(-1, 1)[::1]) and not non_finite(np.delete(y, at))


def test_the_nan_inf_check_knows_every_float16_and_the_float32_edges() -> None:
    """Every float16 bit pattern, alone and in a finite block (NaNs of either sign and any payload,
    both infinities, negative zero, subnormals), and the float32/float64 patterns at the exponent's edges."""
    from tgo_store.store.integrity import non_finite

    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    finite = np.isfinite(every)
    assert non_finite(every) and not non_finite(every[finite])
    patterns = np.flatnonzero(~finite)[::3].tolist() + list(range(0, 1 << 16, 97)) + [0x7BFF, 0xFBFF, 0x8000]
    for bits in patterns:
        block = np.ones(37, np.float16)
        block.view(np.uint16)[11] = bits
        assert non_finite(block) == (not np.isfinite(block).all()), hex(bits)
    for kind, float_type, edges in ((np.uint32, np.float32, (0x7F7FFFFF, 0x7F800000, 0x7F800001, 0xFF7FFFFF, 0xFF800000,
                                                            0xFFFFFFFF, 0x80000000, 0x00000001)),
                                    (np.uint64, np.float64, (0x7FEFFFFFFFFFFFFF, 0x7FF0000000000000,
                                                             0xFFF0000000000001, 0xFFEFFFFFFFFFFFFF))):
        for bits in edges:
            block = np.ones(9, float_type)
            block.view(kind)[4] = bits
            assert non_finite(block) == (not np.isfinite(block).all()), hex(bits)
