"""tgo_analysis: out-of-core spectral geometry of activation stores with Dask.

Reads any dataset with an ``activations`` variable of dims (checkpoint, layer, sample, token,
feature); never imports torch at module level.
"""

from __future__ import annotations

from tgo_analysis.analyze import METRICS, analyze

__all__ = ["METRICS", "analyze"]


def __dir__() -> list[str]:
    """The public names with the loaded ones (tab completion; names loaded on first use are listed too)."""
    return sorted({*globals(), *__all__})
