"""token_correlation_centred (issue 18 item 10): Pearson r after per-feature centring.

A shared per-feature mean profile and independent noise: Joseph's r is high from the profile
alone, the centred r is near zero; both equal np.corrcoef of the (centred) flattened data.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.analyze import analyze
from tgo_analysis.kernels.correlation import mean_lower_triangle
from tgo_store.store import schema as S


def test_centred_correlation_removes_a_shared_mean_profile() -> None:
    rng = np.random.default_rng(3)
    n, t, d = 40, 5, 12
    profile = np.linspace(-4, 4, d)
    x = profile + rng.standard_normal((n, t, d))
    ds = xr.Dataset({S.ACTIVATIONS: (S.DIMS, x[None, None].astype(np.float32))}).chunk({S.SAMPLE: 16})
    out = analyze(ds, "mean_token_correlation,mean_token_correlation_centred", progress=False)
    x64 = np.asarray(ds[S.ACTIVATIONS].values[0, 0], dtype=np.float64)
    flat = x64.transpose(1, 0, 2).reshape(t, -1)
    centred = (x64 - x64.mean(axis=0)).transpose(1, 0, 2).reshape(t, -1)
    np.testing.assert_allclose(out[N.TOKEN_CORRELATION].values[0, 0], np.corrcoef(flat), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out[N.TOKEN_CORRELATION_CENTRED].values[0, 0], np.corrcoef(centred), rtol=1e-9,
                               atol=1e-12)
    plain, centred_mean = float(out[N.MEAN_TOKEN_CORRELATION][0, 0]), float(out[N.MEAN_TOKEN_CORRELATION_CENTRED][0, 0])
    np.testing.assert_allclose(centred_mean, mean_lower_triangle(np.corrcoef(centred)), rtol=1e-9)
    assert plain > 0.8 and abs(centred_mean) < 0.05
