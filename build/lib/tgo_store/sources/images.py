"""Image sources: arrays in [0, 1] and folders of image files, prepared for the model's input.

``ImageFormat`` resizes to the model's square input and normalises with its mean and std;
every image source yields float32 NCHW batches through it.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import numpy as np

from tgo_store.errors import TgoError
from tgo_store.sources.base import Batch, PlainSource, SourceOptions, per_channel, spans

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageFormat:
    """The input a model expects: square size, channels and normalisation."""

    image_size: int
    in_chans: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)

    @classmethod
    def of(cls, options: SourceOptions) -> ImageFormat:
        return cls(int(options.image_size), int(options.in_chans), tuple(options.mean), tuple(options.std))

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Images in [0, 1], (N, H, W) or NHWC or NCHW -> normalised float32 NCHW at image_size."""
        x = to_nchw(np.asarray(images, dtype=np.float32), self.in_chans)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = _resize_bilinear(x, self.image_size)
        mean = np.asarray(per_channel(self.mean, self.in_chans), np.float32)[None, :, None, None]
        std = np.asarray(per_channel(self.std, self.in_chans), np.float32)[None, :, None, None]
        return (x - mean) / std


def to_nchw(x: np.ndarray, in_chans: int) -> np.ndarray:
    """Accept (N,H,W), (N,H,W,C) or (N,C,H,W); convert grey <-> RGB; refuse anything else."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4:
        raise TgoError(f"images have shape {x.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W) arrays")
    channels = x.shape[1]
    if channels == in_chans:
        return x
    if channels == 1:
        return np.repeat(x, in_chans, axis=1)
    if channels in (3, 4) and in_chans == 1:
        return x[:, :3].mean(axis=1, keepdims=True)
    if channels == 4 and in_chans == 3:
        return x[:, :3]
    raise TgoError(f"images have {channels} channels but the model expects {in_chans}; "
                   "convert the images or build the model with a matching in_chans")


def _resize_bilinear(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of NCHW float images (align_corners=False), separable and vectorised."""

    def weights(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(size) + 0.5) * n_in / size - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    lo, hi, w = weights(x.shape[2])
    x = x[:, :, lo] * (1 - w)[None, None, :, None] + x[:, :, hi] * w[None, None, :, None]
    lo, hi, w = weights(x.shape[3])
    return x[:, :, :, lo] * (1 - w) + x[:, :, :, hi] * w


class ArraySource(PlainSource):
    """Images held as an array in [0, 1] (digits, .npy/.npz files, synthetic data)."""

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray | None, fmt: ImageFormat,
                 ids: np.ndarray | None = None, fingerprint: str | None = None):
        if len(images) == 0:
            raise TgoError(f"data source {name} holds no images; point --data at a non-empty dataset")
        self.name = name
        self._images = images
        self.labels = np.full(len(images), -1, np.int64) if labels is None else np.asarray(labels, np.int64)
        self.sample_ids = np.arange(len(images), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
        self._format = fmt
        self._fingerprint = fingerprint or hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
        to_nchw(np.asarray(images[:1], np.float32), fmt.in_chans)  # fail early on a bad shape

    def __len__(self) -> int:
        return len(self._images)

    def fingerprint(self) -> str:
        return self._fingerprint

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        for lo, hi in spans(len(self), batch_size, start, stop):
            yield Batch(self._format.prepare(self._images[lo:hi]), self.sample_ids[lo:hi], self.labels[lo:hi])


class ImageFolderSource(PlainSource):
    """A folder of image files at an fsspec URL, one sub-folder per class (like ImageFolder)."""

    def __init__(self, url: str, fmt: ImageFormat):
        fs, root = fsspec.core.url_to_fs(url)
        if not fs.isdir(root):
            raise TgoError(f"data folder {url} does not exist; pass an existing folder of images")
        files = sorted(p for p in fs.find(root) if p.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise TgoError(f"data folder {url} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                           "put images in one sub-folder per class")
        rel = [p[len(root.rstrip("/")) + 1:] for p in files]
        classes = sorted({r.split("/")[0] for r in rel if "/" in r})
        self.name = url
        self.classes = classes
        self._fs, self._files = fs, files
        self.labels = np.array([classes.index(r.split("/")[0]) if "/" in r else -1 for r in rel], np.int64)
        self.sample_ids = np.arange(len(files), dtype=np.int64)
        self._format = fmt
        listing = "\n".join(f"{r}\t{fs.size(p)}" for r, p in zip(rel, files, strict=True))
        self._fingerprint = hashlib.sha256(listing.encode()).hexdigest()

    def __len__(self) -> int:
        return len(self._files)

    def fingerprint(self) -> str:
        return self._fingerprint

    def _load(self, path: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with self._fs.open(path, "rb") as f:
                img = Image.open(io.BytesIO(f.read()))
                img = img.convert("L" if self._format.in_chans == 1 else "RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise TgoError(f"cannot read image {path} ({exc}); remove or replace the file") from exc
        size = self._format.image_size
        img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img, np.float32) / 255.0

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        for lo, hi in spans(len(self), batch_size, start, stop):
            images = np.stack([self._load(p) for p in self._files[lo:hi]])
            yield Batch(self._format.prepare(images), self.sample_ids[lo:hi], self.labels[lo:hi])


class ImageFolderEntry:
    """Registry fallback: any path or fsspec URL without a ``scheme:`` prefix is an image folder."""

    name = "image-folder"

    def can_open(self, spec: str) -> bool:
        from tgo_store.sources.base import scheme

        return scheme(spec) is None

    def open(self, spec: str, options: SourceOptions) -> ImageFolderSource:
        return ImageFolderSource(spec, ImageFormat.of(options))
