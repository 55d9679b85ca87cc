"""Pure numpy kernels: the arithmetic of every statistic, with no Dask, no Zarr and no torch.

As ``dask/array/chunk.py`` is for dask: functions over in-memory arrays, each tested against an
independent float64 reference. Statistics (``tgo_analysis.statistics``) call them per block.
"""
