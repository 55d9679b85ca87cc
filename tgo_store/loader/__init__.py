"""The store as a training set (SPEC section 7): ``ActivationLoader``.

One module per job: ``source`` (the layer, its pieces and valid positions), ``plan`` (the
seeded order of an epoch), ``mixing`` (the window buffer), ``reader`` (read-ahead threads),
``state`` (resume), ``stats`` (normalisation), ``core`` (the loader itself); ``export`` writes a
layer as an Arrow dataset (``tgo export``, registry ``EXPORTERS``: ``hf-datasets`` flat rows,
``saelens`` SAELens's cached activations with ``hook_names``; ``arrow`` the folder they share).
"""

from tgo_store.loader.core import ActivationLoader

__all__ = ["ActivationLoader"]
