"""Chunk and shard shapes of the activation store.

One shard holds (1 checkpoint, 1 layer, one block of samples, every token, every feature):
that is exactly what one ingest task writes for one layer, so parallel writers never share a
shard, and exactly what analysis reads per task ("all tokens of one layer for a block of
samples"). Inside a shard, inner chunks split the token axis, so that "one token across
layers" reads only its own inner chunks instead of whole shards.

Sizes: a shard targets ~32 MB (one layer of one block); inner chunks ~16 MB when a shard is
larger than that (10-40 MB inner chunks read faster than 150 MB ones). No compressor: fp16
activations barely compress (zstd gave 1.08x here, 1.00-1.06 on real ViT activations) and
compression cut the write rate 1.3-2.5x. Shards are written whole with zarr-python's default
pipeline (no empty-chunk scan; it needs half the CPU of the `zarrs` pipeline for writes) and
read with `zarrs` (3x faster layer slabs). Numbers: `python -m benchmarks.store_layout`,
benchmarks/results/store-layout-*.json. A dataset of at least 4 batches is cut into at least
4 blocks, so capture always has a next block to work on while the last one is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SHARD_TARGET_BYTES = 32 * 2**20
INNER_CHUNK_TARGET_BYTES = 16 * 2**20
MIN_BLOCKS = 4


@dataclass(frozen=True)
class StoreLayout:
    """Samples per block (= per shard) and tokens per inner chunk."""

    samples_per_block: int
    tokens_per_chunk: int
    n_tokens: int

    def shard_shape(self, n_features: int) -> tuple[int, ...]:
        n_chunks = math.ceil(self.n_tokens / self.tokens_per_chunk)
        return (1, 1, self.samples_per_block, n_chunks * self.tokens_per_chunk, n_features)

    def chunk_shape(self, n_features: int) -> tuple[int, ...]:
        return (1, 1, self.samples_per_block, self.tokens_per_chunk, n_features)

    def n_blocks(self, n_samples: int) -> int:
        return math.ceil(n_samples / self.samples_per_block)

    def block_range(self, block: int, n_samples: int) -> tuple[int, int]:
        start = block * self.samples_per_block
        return start, min(start + self.samples_per_block, n_samples)


def choose_layout(n_samples: int, n_tokens: int, n_features: int, itemsize: int, batch_size: int,
                  samples_per_block: int | None = None) -> StoreLayout:
    """Blocks are whole batches, ~32 MB per layer and at least MIN_BLOCKS per dataset when it
    holds that many batches; inner chunks split tokens to ~16 MB."""
    per_sample = n_tokens * n_features * itemsize
    if samples_per_block is None:
        batches = max(1, round(SHARD_TARGET_BYTES / (per_sample * batch_size)))
        # at least MIN_BLOCKS blocks where the data allows: with one block, nothing is left to
        # capture while it is written (measured: 23 % storage overhead with 1 block, 12 % with 8)
        # (floor: 5.6 batches make 5 blocks of one batch, not 3 of two; an existing store keeps its layout)
        batches = min(batches, max(1, n_samples // (MIN_BLOCKS * batch_size)))
        samples_per_block = batches * batch_size
    samples_per_block = max(1, min(int(samples_per_block), n_samples))
    shard_bytes = samples_per_block * per_sample
    if shard_bytes <= INNER_CHUNK_TARGET_BYTES * 1.5:
        tokens_per_chunk = n_tokens
    else:
        n_chunks = math.ceil(shard_bytes / INNER_CHUNK_TARGET_BYTES)
        tokens_per_chunk = math.ceil(n_tokens / n_chunks)
    return StoreLayout(samples_per_block, tokens_per_chunk, n_tokens)


def block_shard_keys(array: Any, checkpoint_index: int, block: int) -> list[str]:
    """Store keys of every shard of one (checkpoint, sample block): one per layer and token shard."""
    token_shards = -(-array.shape[3] // array.shards[3])
    return [
        f"{array.path}/{array.metadata.encode_chunk_key((checkpoint_index, layer, block, token_shard, 0))}"
        for layer in range(array.shape[1])
        for token_shard in range(token_shards)
    ]
