"""Plumbing of the `integrity` benchmark row: both codec settings really differ on disk, and the
cost is the ratio of the two times."""

from __future__ import annotations

import zarr

from benchmarks.integrity import _checksums, _rates, shard_writes
from tgo_store.store.integrity import has_checksums
from tgo_store.store.metadata import data_compressors


def test_the_two_modes_write_with_and_without_the_codec(tmp_path) -> None:
    for mode, expected in (("crc32c", True), ("none", False)):
        with _checksums(mode):
            array = zarr.create_array(str(tmp_path / f"{mode}.zarr"), shape=(4, 8), chunks=(2, 8), shards=(4, 8),
                                      dtype="float16", compressors=data_compressors())
        assert has_checksums(array) is expected
    seconds, nbytes = shard_writes(tmp_path, (1, 2, 64, 8, 16))
    assert set(seconds) == {"crc32c", "none"} and nbytes == 2 * 64 * 8 * 16 * 2
    rates = _rates({"crc32c": 2.0, "none": 1.0}, 10**6, "x")
    assert rates["x_crc32c_cost_percent"] == 100.0 and rates["x_none_mb_per_s"] == 1.0
