"""Synthetic text-like activations with padding, special tokens and a Zipf vocabulary."""

from __future__ import annotations

import numpy as np
import xarray as xr

from tgo_store.store import schema as S


def text_like(n: int = 48, t: int = 20, d: int = 128, vocab: int = 300, seed: int = 0,
              label_seed: int | None = None) -> dict[str, np.ndarray]:
    """x (n, t, d) with a planted power-law pooled spectrum, right padding (huge values in the
    padding, which must never enter), a special first token with a massive activation, and
    Zipf-distributed token ids whose distance to the centroid falls with frequency. The
    labels (ids, lengths) come from ``label_seed`` (default ``seed``), the vectors from ``seed``."""
    labels = np.random.default_rng(seed if label_seed is None else label_seed)
    ids = np.minimum(labels.zipf(1.3, size=(n, t)) - 1, vocab - 1).astype(np.int32)
    lengths = labels.integers(t // 2, t + 1, size=n)
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    scales = np.arange(1, d + 1, dtype=np.float64) ** -0.5
    spread = 1.0 + 0.3 * np.log1p(ids)[..., None]  # rare (high) ids lie farther out
    x = (rng.standard_normal((n, t, d)) * scales * spread) @ basis.T + 3.0
    mask = np.arange(t)[None, :] < lengths[:, None]
    special = np.zeros((n, t), dtype=bool)
    special[:, 0] = True
    ids[:, 0] = vocab - 1  # BOS
    x[:, 0] += 40.0 * basis[:, 5]  # the massive first-position activation of decoders
    x[~mask] = 1e4
    ids[~mask] = -1
    counts = np.bincount(ids[mask], minlength=vocab).astype(np.int64)
    return {"x": x, "mask": mask, "special": special, "ids": ids, "counts": counts}


CHUNK = 8  # samples per zarr chunk of the synthetic text store


def write_text_store(path: str) -> xr.Dataset:
    """(checkpoint 2, layer 2, sample 48, token 20, feature 128) float16 with the SPEC 5 text
    labels, written with plain xarray to zarr chunked by sample, and opened lazily."""
    labels = text_like(seed=0)
    x = np.asarray([[text_like(seed=10 * c + layer, label_seed=0)["x"] for layer in range(2)] for c in range(2)],
                   dtype=np.float16)
    sample_token = (S.SAMPLE, S.TOKEN)
    ds = xr.Dataset(
        {S.ACTIVATIONS: (S.DIMS, x), S.VOCAB_COUNT: (S.VOCAB, labels["counts"])},
        coords={S.TOKEN_ID: (sample_token, labels["ids"]), S.ATTENTION_MASK: (sample_token, labels["mask"]),
                S.TOKEN_SPECIAL: (sample_token, labels["special"])},
    )
    ds.chunk({S.SAMPLE: CHUNK}).to_zarr(path, zarr_format=3, consolidated=True)
    return xr.open_zarr(path, zarr_format=3, consolidated=True)
