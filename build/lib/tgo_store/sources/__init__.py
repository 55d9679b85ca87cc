"""Data sources: spec strings -> batches in a fixed order, found through a registry.

See ``base`` for the protocol, ``registry`` for the order in which specs are tried, and one
module per kind of source (digits, synthetic, arrays, images, text).
"""

from tgo_store.sources.base import (
           Batch,
           DataSource,
           Positions,
           SourceEntry,
           SourceOptions,
           TokenBatch,
)
from tgo_store.sources.digits import digits_split
from tgo_store.sources.images import ArraySource, ImageFolderSource, ImageFormat
from tgo_store.sources.registry import SOURCES, open_source

__all__ = ["SOURCES", "ArraySource", "Batch", "DataSource", "ImageFolderSource", "ImageFormat", "Positions",
           "SourceEntry", "SourceOptions", "TokenBatch", "digits_split", "open_source"]
