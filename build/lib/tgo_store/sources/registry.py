"""The data-source registry and ``open_source``: the first entry that can open a spec opens it.

Order: sklearn digits, synthetic, .npy/.npz, text, tokens, then entry points of the ``tgo.sources``
group, then the image-folder fallback for any plain path or URL.
"""

from __future__ import annotations

from typing import Any

from tgo_store.errors import TgoError
from tgo_store.plugins import Registry
from tgo_store.sources.arrays import ArrayFileEntry
from tgo_store.sources.base import DataSource, SourceEntry, SourceOptions
from tgo_store.sources.digits import DigitsEntry
from tgo_store.sources.images import ImageFolderEntry
from tgo_store.sources.synthetic import SyntheticEntry
from tgo_store.sources.text import TextEntry
from tgo_store.sources.tokens import TokenFileEntry

SOURCES: Registry[SourceEntry] = Registry(
    "tgo.sources", [DigitsEntry(), SyntheticEntry(), ArrayFileEntry(), TextEntry(), TokenFileEntry()], fallback=ImageFolderEntry())


def open_source(spec: str, options: SourceOptions | None = None, **values: Any) -> DataSource:
    """Open a data source from its spec with the model's input format and the data options.

    ``values`` are ``SourceOptions`` fields (``image_size=``, ``tokenizer=``, ``seq_len=`` ...).
    """
    options = options or SourceOptions.of(**values)
    entry = SOURCES.first(lambda e: e.can_open(spec))
    if entry is None:
        raise TgoError(f"unknown data spec '{spec}'; use sklearn:digits[:train|:test], synthetic:N, text:pydoc, "
                       f"text:URL, a folder of images or a .npy/.npz file (sources: {', '.join(SOURCES.names())})")
    return entry.open(spec, options)
