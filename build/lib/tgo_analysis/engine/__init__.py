"""The reduction engine: read a unit's sample blocks once per pass and fold them through statistics.

It plans passes within the memory budget (``budget``), builds units (``units``), reads blocks
(``blocks``), folds (``fold``), runs per-token spectra on a torch device as a fold backend
(``device``) and chooses where it runs (``scheduler``). It names no statistic.
"""
