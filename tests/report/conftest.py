"""A fake results dataset with the exact SPEC section 2 schema, so the report is tested without
running an analysis. Values are synthetic but consistent: eigenvalues follow a power law whose
exponent is the stored alpha, mean_token_correlation is the mean of the stored matrices."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

FIT_RANGE = (11, 100)


def make_fake_results(
    steps: tuple[int, ...] = (0, 10, 100), n_layers: int = 4, grid: int = 4, n_rank: int = 128
) -> xr.Dataset:
    rng = np.random.default_rng(0)
    n_ckpt, n_tok = len(steps), 1 + grid * grid
    ranks = np.arange(1, n_rank + 1)
    cltk = (n_ckpt, n_layers, n_tok)

    alpha = 1.0 + rng.uniform(0.0, 1.5, size=cltk)
    scale = rng.uniform(0.5, 2.0, size=cltk)
    eigenvalues = scale[..., None] * ranks ** -alpha[..., None]
    alpha[:, 0, 0] = np.nan  # CLS at the embedding output: zero variance, as in a real ViT
    eigenvalues[:, 0, 0, :] = 0.0

    corr = rng.uniform(-0.2, 1.0, size=(n_ckpt, n_layers, n_tok, n_tok))
    corr = (corr + corr.transpose(0, 1, 3, 2)) / 2
    idx = np.arange(n_tok)
    corr[..., idx, idx] = 1.0
    lower = np.tril_indices(n_tok, k=-1)

    clusters = rng.integers(0, 3, size=n_tok)
    clusters[0] = -1  # CLS: NaN alpha at layer 0, no cluster
    clusters[5] = -1

    def metric(lo: float, hi: float) -> np.ndarray:
        values = rng.uniform(lo, hi, size=cltk)
        values[:, 0, 0] = np.nan
        return values

    cltk_dims = ("checkpoint", "layer", "token")
    data = {
        "eigenvalues": (("checkpoint", "layer", "token", "rank"), eigenvalues),
        "alpha": (cltk_dims, alpha),
        "alpha_r2": (cltk_dims, metric(0.9, 1.0)),
        "effective_rank": (cltk_dims, metric(2, 40)),
        "stable_rank": (cltk_dims, metric(1, 5)),
        "participation_ratio": (cltk_dims, metric(1.5, 20)),
        "spectral_entropy": (cltk_dims, metric(0.2, 0.9)),
        "spectral_flatness": (cltk_dims, metric(1e-4, 0.3)),
        "top1_share": (cltk_dims, metric(0.1, 0.9)),
        "cosine_anisotropy": (cltk_dims, metric(0.1, 0.99)),
        "eigenvalues_all": (
            ("checkpoint", "layer", "rank"),
            np.sort(rng.uniform(0, 1, (n_ckpt, n_layers, n_rank)), axis=-1)[..., ::-1],
        ),
        "alpha_all": (("checkpoint", "layer"), rng.uniform(1, 3, (n_ckpt, n_layers))),
        "top1_share_all": (("checkpoint", "layer"), rng.uniform(0, 1, (n_ckpt, n_layers))),
        "stable_rank_all": (("checkpoint", "layer"), rng.uniform(1, 9, (n_ckpt, n_layers))),
        "token_correlation": (("checkpoint", "layer", "token", "token_other"), corr),
        "mean_token_correlation": (("checkpoint", "layer"), corr[..., lower[0], lower[1]].mean(-1)),
        "intrinsic_dimension": (("checkpoint", "layer"), rng.uniform(3, 12, (n_ckpt, n_layers))),
        "alpha_cluster": (("token",), clusters),
    }
    rows = np.r_[-1, np.repeat(np.arange(grid), grid)]
    cols = np.r_[-1, np.tile(np.arange(grid), grid)]
    coords = {
        "checkpoint": np.array(steps, dtype=np.int64),
        "checkpoint_path": ("checkpoint", [f"/runs/exp/step_{s:06d}.pth" for s in steps]),
        "checkpoint_sha256": ("checkpoint", [f"{s:02d}" + "ab" * 31 for s in steps]),
        "layer": np.arange(n_layers, dtype=np.int64),
        "layer_name": ("layer", ["norm_pre"] + [f"blocks.{i}" for i in range(n_layers - 1)]),
        "token": np.arange(n_tok, dtype=np.int64),
        "token_kind": ("token", ["cls"] + ["patch"] * (n_tok - 1)),
        "token_row": ("token", rows.astype(np.int64)),
        "token_col": ("token", cols.astype(np.int64)),
        "rank": ranks.astype(np.int64),
        "token_other": np.arange(n_tok, dtype=np.int64),
    }
    attrs = {
        "created_by": "tgo 0.1.0",
        "package_versions": {"tgo": "0.1.0", "numpy": np.__version__, "xarray": xr.__version__},
        "scheduler": "threaded",
        "alpha_fit_range": list(FIT_RANGE),
        "alpha_fit": "weighted least squares of log lambda_i on [-log i, 1], weights 1/i",
        "input_attrs": json.dumps(
            {
                "tgo_schema": 1,
                "model": {"name": "fake_vit", "kwargs": {"depth": n_layers - 1}},
                "dataset": {"name": "synthetic:64", "fingerprint": "f00d"},
            }
        ),
    }
    strings = np.dtypes.StringDType()  # variable-length, as tgo writes them (zarr v3 `string`, stable)
    for name in ("checkpoint_path", "checkpoint_sha256", "layer_name", "token_kind"):
        coords[name] = (coords[name][0], np.asarray(coords[name][1], dtype=strings))
    return xr.Dataset(data, coords=coords, attrs=attrs)


@pytest.fixture
def fake_results() -> xr.Dataset:
    return make_fake_results()


@pytest.fixture
def fake_training() -> dict:
    return {"steps": [0, 10, 100], "accuracy": [0.1, 0.5, 0.9], "loss": [float("nan"), 1.2, 0.3]}


@pytest.fixture
def fake_results_store(tmp_path, fake_results) -> str:
    url = str(tmp_path / "metrics.zarr")
    fake_results.to_zarr(url, zarr_format=3, consolidated=False)
    return url
