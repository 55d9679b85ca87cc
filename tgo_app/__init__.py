"""The application: the code that drives capture, training and analysis end to end.

The CLI verbs (``python -m tgo_app.cli``, the ``tgo`` script), the demos, their training runs and
the cluster sweep live here, apart from the store (:mod:`tgo_store`) and the measuring core
(:mod:`tgo_analysis`), which never imports torch or tgo_store's capture.
"""
