"""Data sources: turn a spec string into batches of normalised images in a fixed order.

Every source yields the same samples in the same order on every call, and can start at any
sample, so that each (checkpoint, sample block) of a store can be (re)computed on its own.
Sources are torch-free: images are float32 numpy arrays in NCHW layout, already resized to
the model's input size and normalised with its mean and std.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import fsspec
import numpy as np

from tgo_store.errors import TgoError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


@dataclass(frozen=True)
class Batch:
    """One batch of model inputs with the dataset index and label of each."""

    inputs: np.ndarray  # (B, C, H, W) float32
    sample_ids: np.ndarray  # (B,) int64
    labels: np.ndarray  # (B,) int64, -1 when none


class DataSource(Protocol):
    """What ingest needs from a dataset."""

    name: str
    sample_ids: np.ndarray  # (N,) int64: the `sample` coordinate
    labels: np.ndarray  # (N,) int64: the `label` coordinate, -1 when none

    def __len__(self) -> int: ...

    def fingerprint(self) -> str: ...

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]: ...


@dataclass(frozen=True)
class ImageFormat:
    """The input a model expects: square size, channels and normalisation."""

    image_size: int
    in_chans: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Images in [0, 1], (N, H, W) or NHWC or NCHW -> normalised float32 NCHW at image_size."""
        x = _to_nchw(np.asarray(images, dtype=np.float32), self.in_chans)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = _resize_bilinear(x, self.image_size)
        mean = np.asarray(_per_channel(self.mean, self.in_chans), np.float32)[None, :, None, None]
        std = np.asarray(_per_channel(self.std, self.in_chans), np.float32)[None, :, None, None]
        return (x - mean) / std


def _per_channel(values: Sequence[float], channels: int) -> list[float]:
    values = list(values)
    return values if len(values) == channels else [float(np.mean(values))] * channels


def _to_nchw(x: np.ndarray, in_chans: int) -> np.ndarray:
    """Accept (N,H,W), (N,H,W,C) or (N,C,H,W); convert grey <-> RGB; refuse anything else."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4:
        raise TgoError(
            f"images have shape {x.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W) arrays"
        )
    channels = x.shape[1]
    if channels == in_chans:
        return x
    if channels == 1:
        return np.repeat(x, in_chans, axis=1)
    if channels in (3, 4) and in_chans == 1:
        return x[:, :3].mean(axis=1, keepdims=True)
    if channels == 4 and in_chans == 3:
        return x[:, :3]
    raise TgoError(
        f"images have {channels} channels but the model expects {in_chans}; "
        "convert the images or build the model with a matching in_chans"
    )


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


class ArraySource:
    """Images held as an array in [0, 1] (digits, .npy/.npz files, synthetic data)."""

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray | None,
                 fmt: ImageFormat, ids: np.ndarray | None = None, fingerprint: str | None = None):
        if len(images) == 0:
            raise TgoError(f"data source {name} holds no images; point --data at a non-empty dataset")
        self.name = name
        self._images = images
        self.labels = (np.full(len(images), -1, np.int64) if labels is None
                       else np.asarray(labels, np.int64))
        self.sample_ids = np.arange(len(images), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
        self._format = fmt
        self._fingerprint = fingerprint or hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
        _to_nchw(np.asarray(images[:1], np.float32), fmt.in_chans)  # fail early on a bad shape

    def __len__(self) -> int:
        return len(self._images)

    def fingerprint(self) -> str:
        return self._fingerprint

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        stop = len(self) if stop is None else min(stop, len(self))
        for lo in range(start, stop, batch_size):
            hi = min(lo + batch_size, stop)
            yield Batch(self._format.prepare(self._images[lo:hi]), self.sample_ids[lo:hi], self.labels[lo:hi])


class ImageFolderSource:
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
        stop = len(self) if stop is None else min(stop, len(self))
        for lo in range(start, stop, batch_size):
            hi = min(lo + batch_size, stop)
            images = np.stack([self._load(p) for p in self._files[lo:hi]])
            yield Batch(self._format.prepare(images), self.sample_ids[lo:hi], self.labels[lo:hi])


def digits_split(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits in [0, 1] with a fixed seeded 80/20 split: images, labels, ids."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(images))
    n_test = round(len(images) * DIGITS_TEST_FRACTION)
    ids = {"all": np.arange(len(images)), "test": np.sort(order[:n_test]),
           "train": np.sort(order[n_test:])}.get(split)
    if ids is None:
        raise TgoError(f"unknown digits split '{split}'; use sklearn:digits, sklearn:digits:train or sklearn:digits:test")
    return images[ids], digits.target[ids].astype(np.int64), ids.astype(np.int64)


def _synthetic(spec: str, fmt: ImageFormat) -> ArraySource:
    parts = spec.split(":")
    try:
        n = int(parts[1])
        seed = int(parts[2]) if len(parts) > 2 else 0
    except (IndexError, ValueError) as exc:
        raise TgoError(f"bad synthetic data spec '{spec}'; use synthetic:N or synthetic:N:SEED") from exc
    rng = np.random.default_rng(seed)
    images = rng.random((n, fmt.in_chans, fmt.image_size, fmt.image_size), dtype=np.float32)
    labels = rng.integers(0, 10, n)
    return ArraySource(spec, images, labels, fmt)


def _array_file(url: str, fmt: ImageFormat) -> ArraySource:
    try:
        with fsspec.open(url, "rb") as f:
            raw = io.BytesIO(f.read())
    except FileNotFoundError as exc:
        raise TgoError(f"data file {url} does not exist; pass an existing .npy or .npz file") from exc
    loaded = np.load(raw, allow_pickle=False)
    if isinstance(loaded, np.lib.npyio.NpzFile):
        if "images" not in loaded:
            raise TgoError(f"{url} has no 'images' array (found {sorted(loaded.files)}); save it as images=..., labels=...")
        images, labels = loaded["images"], loaded.get("labels", None)
    else:
        images, labels = loaded, None
    images = np.asarray(images, np.float32)
    if images.size and images.max() > 1.0:
        images = images / 255.0
    digest = hashlib.sha256(raw.getvalue()).hexdigest()
    return ArraySource(url, images, labels, fmt, fingerprint=digest)


def open_source(spec: str, *, image_size: int, in_chans: int = 3,
                mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5)) -> DataSource:
    """Open a data source from its spec; see the module docstring of the CLI's --data option."""
    fmt = ImageFormat(int(image_size), int(in_chans), tuple(mean), tuple(std))
    if spec.startswith("sklearn:digits"):
        split = spec.split(":")[2] if spec.count(":") >= 2 else "all"
        images, labels, ids = digits_split(split)
        import sklearn

        return ArraySource(spec, images, labels, fmt, ids=ids,
                           fingerprint=f"sklearn-digits-{split}-{sklearn.__version__}-seed{DIGITS_SPLIT_SEED}")
    if spec.startswith("synthetic:"):
        return _synthetic(spec, fmt)
    if spec.lower().endswith((".npy", ".npz")):
        return _array_file(spec, fmt)
    if ":" in spec.split("/")[0] and "://" not in spec:
        raise TgoError(f"unknown data spec '{spec}'; use sklearn:digits[:train|:test], synthetic:N, a folder of images or a .npy/.npz file")
    return ImageFolderSource(spec, fmt)
