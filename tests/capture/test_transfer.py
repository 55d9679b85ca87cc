"""Device activations -> host block buffers: exact casts, NaN/Inf found per layer, bounded pool."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from tgo_store.capture.transfer import BlockFiller, BufferPool, NonFiniteActivations


def fill(filler: BlockFiller, batches: list[torch.Tensor], split: int | None = None) -> np.ndarray:
    """Fill a block from (L, B, T, D) batches, each layer given whole or as two token pieces."""
    n = sum(b.shape[1] for b in batches)
    filler.start((batches[0].shape[0], n, *batches[0].shape[2:]))
    offset = 0
    for b in batches:
        parts = [[layer] if split is None else [layer[:, :split], layer[:, split:]] for layer in b]
        filler.add(parts, offset)
        offset += b.shape[1]
    return filler.finish()


@pytest.mark.parametrize("split", [None, 1, 3])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_batches_land_in_place_and_bf16_is_cast_exactly(dtype: str, split: int | None) -> None:
    batches = [torch.randn(3, b, 5, 4).to(torch.bfloat16) for b in (2, 3, 1)]
    block = fill(BlockFiller("cpu", dtype), batches, split)
    exact = np.concatenate([np.array(b.float().tolist(), np.float32) for b in batches], axis=1)
    assert block.dtype == np.dtype(dtype) and block.shape == (3, 6, 5, 4)
    np.testing.assert_array_equal(block, exact.astype(dtype))  # bf16 values are exact in fp16/fp32 here


@pytest.mark.parametrize(
    ("value", "dtype", "layer"),
    [(float("nan"), "float16", 1), (float("inf"), "float32", 2), (1e6, "float16", 0)],  # 1e6 overflows fp16
)
def test_non_finite_values_name_their_layers_and_free_the_buffer(value: float, dtype: str, layer: int) -> None:
    pool = BufferPool("cpu", size=1)
    filler = BlockFiller("cpu", dtype, pool)
    batches = [torch.randn(3, 4, 5, 2), torch.randn(3, 4, 5, 2)]
    batches[1][layer, 2, 3, 1] = value
    with pytest.raises(NonFiniteActivations) as err:
        fill(filler, batches, split=2)
    assert err.value.layers == [layer]
    assert fill(filler, [torch.ones(3, 8, 5, 2)]).sum() == 3 * 8 * 5 * 2  # the pool's only buffer came back


def test_large_finite_sums_are_not_mistaken_for_overflow() -> None:
    """65504 is the largest float16: a float16 sum would overflow, the float32 one must not."""
    block = fill(BlockFiller("cpu", "float16"), [torch.full((1, 64, 50, 50), 65504.0)])
    assert np.isfinite(block).all() and block.max() == np.float16(65504)


def test_the_pool_bounds_buffers_until_the_writer_releases_them() -> None:
    pool = BufferPool("cpu", size=2)
    a, b = pool.acquire((4, 4), torch.float16), pool.acquire((4, 4), torch.float16)
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire((4, 4), torch.float16)))
    waiter.start()
    time.sleep(0.2)
    assert not got, "a third buffer must wait for a release"
    pool.release(a.numpy())  # the writer hands back the numpy view it was given
    waiter.join(timeout=5)
    assert got and got[0].data_ptr() == a.data_ptr()
    assert pool.acquire((2, 2), torch.float32).shape == (2, 2)  # other shapes have their own bound
    pool.release(b)


def test_cuda_fill_falls_back_cleanly_without_cuda() -> None:
    filler = BlockFiller("cpu", "float16")
    assert not filler.cuda and filler._stream is None
    assert not pool_is_pinned(filler.pool)


def pool_is_pinned(pool: BufferPool) -> bool:
    return pool.acquire((2,), torch.float16).is_pinned()
