"""``synthetic:N[:SEED]``: N seeded uniform-noise images with random labels (tests, benchmarks)."""

from __future__ import annotations

import numpy as np

from tgo_store.errors import TgoError
from tgo_store.sources.base import SourceOptions
from tgo_store.sources.images import ArraySource, ImageFormat


class SyntheticEntry:
    name = "synthetic"

    def can_open(self, spec: str) -> bool:
        return spec.startswith("synthetic:")

    def open(self, spec: str, options: SourceOptions) -> ArraySource:
        fmt = ImageFormat.of(options)
        parts = spec.split(":")
        try:
            n = int(parts[1])
            seed = int(parts[2]) if len(parts) > 2 else 0
        except (IndexError, ValueError) as exc:
            raise TgoError(f"bad synthetic data spec '{spec}'; use synthetic:N or synthetic:N:SEED") from exc
        if n < 1 or seed < 0:
            raise TgoError(f"bad synthetic data spec '{spec}': N must be at least 1 and SEED not negative; "
                           "use synthetic:N or synthetic:N:SEED, e.g. synthetic:256")
        rng = np.random.default_rng(seed)
        images = rng.random((n, fmt.in_chans, fmt.image_size, fmt.image_size), dtype=np.float32)
        labels = rng.integers(0, 10, n)
        return ArraySource(spec, images, labels, fmt)
