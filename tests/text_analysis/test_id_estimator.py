"""--id-estimator microscope (issue 18 item 9): LLM-Microscope's intrinsic dimension, like for like.

``microscope_dimension`` equals llm-microscope's own ``intrinsic_dimension`` on planted
manifolds (duplicates included), differs from section 3's TwoNN, and both intrinsic-dimension
statistics use it when asked, saying so in their attrs.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from tests.support import llm_microscope_function
from tgo_analysis import names as N
from tgo_analysis.analyze import analyze
from tgo_analysis.kernels.pooling import position_keys
from tgo_analysis.kernels.twonn import microscope_dimension, twonn_dimension
from tgo_store.store import schema as S

torch = pytest.importorskip("torch")


def planted(n: int, dim: int, ambient: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((ambient, dim)))
    return rng.standard_normal((n, dim)) @ basis.T + 2.0


@pytest.mark.parametrize(("dim", "duplicates"), [(3, 0), (8, 0), (5, 12)])
def test_microscope_estimator_equals_the_package(dim: int, duplicates: int) -> None:
    reference = llm_microscope_function("intrinsic_dimension")
    x = planted(300, dim, 24, seed=dim)
    if duplicates:
        x[-duplicates:] = x[:duplicates]  # r1 = 0: the package's "bad cases"
    ours = microscope_dimension(x)
    theirs = reference(torch.from_numpy(x), "cpu")
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)  # the package's F(mu) = arange / n is float32 in torch
    assert abs(ours - twonn_dimension(x)) > 1e-6  # another estimator, not a relabelling


def test_both_statistics_use_the_chosen_estimator() -> None:
    n, t, d = 60, 4, 6
    x = np.concatenate([planted(n, 3, d, seed=s)[:, None] for s in range(t)], axis=1).astype(np.float32)
    ds = xr.Dataset({S.ACTIVATIONS: (S.DIMS, x[None, None])}).chunk({S.SAMPLE: 16})
    metrics = f"{N.INTRINSIC_DIMENSION},{N.INTRINSIC_DIMENSION_POOLED}"
    default = analyze(ds, metrics, progress=False, pooled_id_points=100)
    micro = analyze(ds, metrics, progress=False, pooled_id_points=100, id_estimator="microscope")
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(micro[N.INTRINSIC_DIMENSION].values[0, 0], microscope_dimension(x64.reshape(n, -1)),
                               rtol=1e-9)
    np.testing.assert_allclose(default[N.INTRINSIC_DIMENSION].values[0, 0], twonn_dimension(x64.reshape(n, -1)),
                               rtol=1e-9)
    keys = position_keys(np.arange(n), (0, t)).ravel()
    points = x64.reshape(n * t, d)[np.argsort(keys, kind="stable")[:100]]
    np.testing.assert_allclose(micro[N.INTRINSIC_DIMENSION_POOLED].values[0, 0], microscope_dimension(points),
                               rtol=1e-9)
    assert micro.attrs["id_estimator"] == "microscope" and default.attrs["id_estimator"] == "twonn"
    assert "LLM-Microscope" in micro.attrs[N.INTRINSIC_DIMENSION_POOLED]
