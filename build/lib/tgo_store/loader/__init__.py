"""The store as a training set (SPEC section 7): ``ActivationLoader``.

One module per job: ``source`` (the layer, its pieces and valid positions), ``plan`` (the
seeded order of an epoch), ``mixing`` (the window buffer), ``reader`` (read-ahead threads),
``state`` (resume), ``stats`` (normalisation), ``core`` (the loader itself); ``export``
writes a layer as a flat-row Arrow dataset (``tgo export --format hf-datasets``).
"""

from tgo_store.loader.core import ActivationLoader

__all__ = ["ActivationLoader"]
