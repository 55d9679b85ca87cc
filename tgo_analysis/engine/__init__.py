"""The reduction engine: read a unit's sample blocks once per pass and fold them through statistics.

It plans passes within the memory budget (``budget``), builds units (``units``), reads blocks
(``blocks``), builds each unit's graph (``graph``), runs statistics' torch kernels on a device
(``device``) and chooses where it runs (``scheduler``). It names no statistic.
"""
