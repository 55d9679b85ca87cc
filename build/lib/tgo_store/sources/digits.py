"""``sklearn:digits[:train|:test]``: scikit-learn's bundled 8x8 digits with a fixed seeded split."""

from __future__ import annotations

import numpy as np

from tgo_store.errors import TgoError
from tgo_store.sources.base import SourceOptions
from tgo_store.sources.images import ArraySource, ImageFormat

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
PREFIX = "sklearn:digits"


def digits_split(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits in [0, 1] with a fixed seeded 80/20 split: images, labels, ids."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(images))
    n_test = round(len(images) * DIGITS_TEST_FRACTION)
    ids = {"all": np.arange(len(images)), "test": np.sort(order[:n_test]), "train": np.sort(order[n_test:])}.get(split)
    if ids is None:
        raise TgoError(f"unknown digits split '{split}'; use sklearn:digits, sklearn:digits:train or sklearn:digits:test")
    return images[ids], digits.target[ids].astype(np.int64), ids.astype(np.int64)


class DigitsEntry:
    name = "sklearn-digits"

    def can_open(self, spec: str) -> bool:
        return spec == PREFIX or spec.startswith(PREFIX + ":")

    def open(self, spec: str, options: SourceOptions) -> ArraySource:
        import sklearn

        split = spec.split(":")[2] if spec.count(":") >= 2 else "all"
        images, labels, ids = digits_split(split)
        return ArraySource(spec, images, labels, ImageFormat.of(options), ids=ids,
                           fingerprint=f"sklearn-digits-{split}-{sklearn.__version__}-seed{DIGITS_SPLIT_SEED}")
