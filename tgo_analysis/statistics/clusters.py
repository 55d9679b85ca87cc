"""alpha_cluster (SPEC 2): the kernel's k-means of each token's alpha trajectory, on a results dataset.

``kernels.clustering`` clusters a numpy (token, layer) array; this wraps it for the results
(a ``token`` DataArray) and words a missing umap-learn as the user's one-line TgoError.
"""

from __future__ import annotations

import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.kernels.clustering import cluster_trajectories
from tgo_store.errors import TgoError


def cluster_alpha_trajectories(alpha: xr.DataArray, n_clusters: int, *, use_umap: bool = False,
                               seed: int = 0) -> xr.DataArray:
    """alpha (layer, token) -> cluster id per token (-1: a trajectory with NaN), ids ordered by mean alpha."""
    try:
        labels = cluster_trajectories(alpha.transpose(N.TOKEN, N.LAYER).values, n_clusters, use_umap=use_umap,
                                      seed=seed)
    except ImportError as exc:
        raise TgoError("UMAP clustering needs umap-learn; install it with `pip install 'tgo[umap]'`") from exc
    return xr.DataArray(labels, dims=(N.TOKEN,), coords={N.TOKEN: alpha[N.TOKEN].values}, name=N.ALPHA_CLUSTER)
