"""The plan of a store: everything needed to write any block of it (small, picklable), and the
blocks it still lacks.

``prepare`` makes it once (creating the store or appending checkpoints); the serial ingest
loop and the parallel workers of ``tgo sweep`` write blocks from the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass

from tgo_store.facts import CheckpointRef, LossSpec
from tgo_store.options import IngestOptions
from tgo_store.store.commits import read_commits
from tgo_store.store.gradient_precision import DEFAULT_GRADIENT_DTYPE
from tgo_store.store.layout import StoreLayout
from tgo_store.store.location import store_records
from tgo_store.store.verify import untrusted_blocks


@dataclass(frozen=True)
class StorePlan:
    """Everything needed to write any block of a store; small and picklable."""

    url: str
    options: IngestOptions  # what the caller asked for (model, data, dtypes, batch size, ...)
    checkpoints: tuple[CheckpointRef, ...]  # resolved: files found, hashed, steps read
    checkpoint_indices: tuple[int, ...]  # slot of each checkpoint along the store's `checkpoint` dim
    n_samples: int
    layers: tuple[int, ...]  # resolved by the capturer (all layers when none were asked for)
    tokens: tuple[int, ...] | None
    layout: StoreLayout
    loss: LossSpec | None = None  # with --gradients: the loss whose ∂L/∂h is recorded (SPEC section 5)
    gradient_dtype: str = DEFAULT_GRADIENT_DTYPE  # storage dtype of the gradients (--gradient-dtype)

    @property
    def model_spec(self) -> str:
        return self.options.model_spec

    @property
    def model_kwargs(self) -> dict:
        return dict(self.options.model_kwargs)

    @property
    def data_spec(self) -> str:
        return self.options.data_spec

    @property
    def data_options(self) -> dict:
        return dict(self.options.data_options)

    @property
    def hook_modules(self) -> tuple[str, ...] | None:
        return tuple(self.options.hook_modules) if self.options.hook_modules else None

    @property
    def dtype(self) -> str:
        return self.options.dtype

    @property
    def batch_size(self) -> int:
        return self.options.batch_size

    @property
    def precision(self) -> str:
        """The model's compute dtype."""
        return self.options.precision

    @property
    def storage_options(self) -> dict:
        return dict(self.options.storage_options)

    @property
    def n_blocks(self) -> int:
        return self.layout.n_blocks(self.n_samples)


def missing_blocks(plan: StorePlan) -> list[tuple[int, int]]:
    """(position in plan.checkpoints, block) pairs without a valid commit record, or whose data does
    not verify (a commit record is trusted only then: damaged blocks are rewritten)."""
    commits = read_commits(store_records(plan.url, plan.storage_options))
    missing, committed = [], {}
    for position, (ref, index) in enumerate(zip(plan.checkpoints, plan.checkpoint_indices, strict=True)):
        for block in range(plan.n_blocks):
            record = commits.get((index, block))
            if record is None or record.get("sha256") != ref.sha256:
                missing.append((position, block))
            else:
                committed[(index, block)] = (position, block)
    damaged = untrusted_blocks(plan.url, plan.storage_options, list(committed))
    return sorted(missing + [committed[key] for key in damaged])
