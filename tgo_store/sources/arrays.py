"""``.npy`` / ``.npz`` files of images at any fsspec URL (``images=`` and optional ``labels=``)."""

from __future__ import annotations

import hashlib
import io

import fsspec
import numpy as np

from tgo_store.errors import TgoError
from tgo_store.sources.base import SourceOptions, scheme
from tgo_store.sources.images import ArraySource, ImageFormat


class ArrayFileEntry:
    name = "array-file"

    def can_open(self, spec: str) -> bool:
        return scheme(spec) is None and spec.lower().endswith((".npy", ".npz"))

    def open(self, spec: str, options: SourceOptions) -> ArraySource:
        try:
            with fsspec.open(spec, "rb") as f:
                raw = f.read()
        except FileNotFoundError as exc:
            raise TgoError(f"data file {spec} does not exist; pass an existing .npy or .npz file") from exc
        return array_source(spec, raw, options)


def array_source(spec: str, raw: bytes, options: SourceOptions) -> ArraySource:
    """The images (and labels) of the bytes of a ``.npy`` / ``.npz`` file; fingerprinted by those bytes.

    The live ``Recorder`` hands its probe inputs here as the bytes ``numpy.savez`` makes, without a file.
    """
    try:
        loaded = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # not a NumPy file, or a pickled object array
        raise TgoError(f"data file {spec} is not a readable .npy/.npz array ({str(exc)[:100]}); "
                       "save it with numpy.save / numpy.savez (images=..., labels=...)") from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        if "images" not in loaded:
            raise TgoError(f"{spec} has no 'images' array (found {sorted(loaded.files)}); "
                           "save it as images=..., labels=...")
        images, labels = loaded["images"], loaded.get("labels", None)
    else:
        images, labels = loaded, None
    images = np.asarray(images, np.float32)
    if images.size and images.max() > 1.0:
        images = images / 255.0
    digest = hashlib.sha256(raw).hexdigest()
    return ArraySource(spec, images, labels, ImageFormat.of(options), fingerprint=digest)
