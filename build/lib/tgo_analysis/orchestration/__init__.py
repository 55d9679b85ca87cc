"""Orchestration: the code that drives capture, training and analysis end to end.

The CLI verbs, the demo, the training loop of the demo and the cluster sweep live here, apart
from the measuring core of :mod:`tgo_analysis` (moments, spectra, metrics, reductions), which
never imports torch or tgo_store's capture.
"""
