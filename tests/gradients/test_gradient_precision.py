"""Gradient precision (issue 18 item 7): float32 by default, ``gradient_zero_fraction`` counted.

A planted block with a known share of entries below float16's smallest normal number counts
exactly that share in float16 and none in float32; ingest stores float32 gradients unless asked,
records the fraction per (checkpoint, layer) equal to a count over the stored gradients, refuses
a dtype that differs from the store's, and warns in one line above 1 %.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from tests.support import ingest_kwargs, save_checkpoints
from tgo_store import ingest, open_store
from tgo_store.errors import TgoError
from tgo_store.store import schema as S
from tgo_store.store.gradient_precision import (
    block_counts,
    underflow_counts,
    warn_underflow,
    zero_fractions,
)

pytest.importorskip("torch")


def planted(rng: np.random.Generator) -> np.ndarray:
    """(2, 8, 4, 16) float64 gradients ~1e-6 and smaller: layer 0 half normal (1e-3), a quarter
    float16-subnormal (1e-6), a quarter below float16's smallest subnormal (1e-9); layer 1 all 1e-3."""
    g = np.full((2, 8, 4, 16), 1e-3) * rng.choice([-1.0, 1.0], size=(2, 8, 4, 16))
    flat = g[0].reshape(-1)
    idx = rng.permutation(flat.size)
    flat[idx[: flat.size // 4]] *= 1e-3
    flat[idx[flat.size // 4: flat.size // 2]] *= 1e-6
    return g


def test_float16_underflow_of_small_gradients_is_counted() -> None:
    g = planted(np.random.default_rng(0))
    half = underflow_counts(g.astype(np.float16)) / g[0].size
    single = underflow_counts(g.astype(np.float32)) / g[0].size
    reference = (np.abs(g.astype(np.float16).astype(np.float64)) < 2.0**-14).mean(axis=(1, 2, 3))
    np.testing.assert_array_equal(half, reference)
    np.testing.assert_array_equal(half, [0.5, 0.0])
    np.testing.assert_array_equal(single, [0.0, 0.0])
    # two blocks of one checkpoint: the fraction is over both blocks' entries
    commits = {(0, 0): block_counts(g.astype(np.float16)), (0, 1): block_counts(np.abs(g).astype(np.float16) * 0 + 1),
               (1, 0): {"sha256": "no gradients"}}
    np.testing.assert_allclose(zero_fractions(commits, (2, 2)), [[0.25, 0.0], [np.nan, np.nan]])


def test_positions_the_loss_does_not_reach_are_not_counted_in_float32() -> None:
    """A causal LM's last position and padding have all-zero float32 rows: not precision loss."""
    g = np.full((2, 4, 8, 16), 1e-3, dtype=np.float32)
    g[:, :, -1] = 0  # the last position of every sequence
    g[:, 0, 5:] = 0  # a padded sequence
    g[0, 1, 2, :4] = 1e-40  # four float32-subnormal entries in a reached row
    counts = block_counts(g)
    reached = 4 * 8 - 4 - 2  # rows per layer
    assert counts["gradient_entries"] == [reached * 16] * 2
    assert counts["gradient_underflow"] == [4, 0]
    # float16: a whole row can underflow, so every row counts
    assert block_counts(g.astype(np.float16))["gradient_entries"] == [4 * 8 * 16] * 2


def test_warning_is_one_line_above_one_percent(capsys) -> None:
    assert warn_underflow(np.array([[0.005, 0.01]]), "float32") is None
    line = warn_underflow(np.array([[0.005, 0.37]]), "float16")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "37.0 %" in err and "--gradient-dtype float32" in err and line in err


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return save_checkpoints(tmp_path_factory.mktemp("ckpt"), [0, 10])


def stored_fraction(url: str) -> np.ndarray:
    """The definition, in float64: lost entries over the rows the loss reaches (float32: rows not
    all zero; a ViT's last layer reaches only the class token, the head's input)."""
    g = open_store(url)[S.GRADIENTS].values
    lost = np.abs(g.astype(np.float64)) < np.finfo(g.dtype).tiny
    rows = np.any(g != 0, axis=-1, keepdims=True) if g.dtype == np.float32 else np.ones((*g.shape[:-1], 1), bool)
    return (lost & rows).sum(axis=(2, 3, 4)) / (rows.sum(axis=(2, 3, 4)) * g.shape[-1])


def test_ingest_stores_float32_gradients_by_default_and_records_the_fraction(ckpts, tmp_path) -> None:
    url = str(tmp_path / "default.zarr")
    ingest(url, **ingest_kwargs(ckpts[:1], gradients=True))  # activations float16 (the default)
    ds = open_store(url)
    assert ds[S.ACTIVATIONS].dtype == np.float16 and ds[S.GRADIENTS].dtype == np.float32
    assert ds[S.GRADIENT_ZERO_FRACTION].dims == (S.CHECKPOINT, S.LAYER)
    assert ds[S.GRADIENT_ZERO_FRACTION].dtype == np.float64
    np.testing.assert_allclose(ds[S.GRADIENT_ZERO_FRACTION].values, stored_fraction(url), rtol=1e-12)
    before = zarr.open_group(url, mode="r")[S.GRADIENTS][...]
    with pytest.raises(TgoError, match="--gradient-dtype float32") as info:
        ingest(url, **ingest_kwargs(ckpts, gradients=True, gradient_dtype="float16"))
    assert "\n" not in str(info.value)
    after = zarr.open_group(url, mode="r")
    assert after[S.GRADIENTS].shape[0] == 1 and np.array_equal(after[S.GRADIENTS][...], before)
    ingest(url, **ingest_kwargs(ckpts, gradients=True))  # appending keeps the store's dtype
    ds = open_store(url)
    assert ds[S.GRADIENT_ZERO_FRACTION].shape == (2, ds.sizes[S.LAYER])
    np.testing.assert_allclose(ds[S.GRADIENT_ZERO_FRACTION].values, stored_fraction(url), rtol=1e-12)


def test_float16_gradients_on_request_count_more_underflow(ckpts, tmp_path) -> None:
    url16, url32 = str(tmp_path / "g16.zarr"), str(tmp_path / "g32.zarr")
    ingest(url16, **ingest_kwargs(ckpts[:1], gradients=True, gradient_dtype="float16"))
    ingest(url32, **ingest_kwargs(ckpts[:1], gradients=True, dtype="float32"))
    f16, f32 = (open_store(u)[S.GRADIENT_ZERO_FRACTION].values for u in (url16, url32))
    assert open_store(url16)[S.GRADIENTS].dtype == np.float16
    np.testing.assert_allclose(f16, stored_fraction(url16), rtol=1e-12)
    assert (f16 >= f32).all() and f16.sum() > f32.sum()
    with pytest.raises(TgoError, match="--gradient-dtype"):
        ingest(str(tmp_path / "bad.zarr"), **ingest_kwargs(ckpts[:1], gradients=True, gradient_dtype="bfloat16"))
    assert not (tmp_path / "bad.zarr").exists()
