"""Capture: a model at a checkpoint turned into host blocks of activations (and gradients).

Checkpoints and models are resolved here, the one block loop runs here (``block``), the losses
whose gradients are recorded live in ``losses``; writing them is the store's job (``tgo_store.store``).
"""
