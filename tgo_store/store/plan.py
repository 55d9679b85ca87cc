"""The plan of a store: everything needed to write any block of it (small, picklable), and the
blocks it still lacks.

``prepare`` makes it once (creating the store or appending checkpoints); the serial ingest
loop and the parallel workers of ``tgo sweep`` write blocks from the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tgo_store.capture.checkpoints import CheckpointRef
from tgo_store.capture.losses import LossSpec
from tgo_store.store.commits import read_commits
from tgo_store.store.gradient_precision import DEFAULT_GRADIENT_DTYPE
from tgo_store.store.layout import StoreLayout
from tgo_store.store.location import store_records


@dataclass(frozen=True)
class StorePlan:
    """Everything needed to write any block of a store; small and picklable."""

    url: str
    model_spec: str
    model_kwargs: dict
    checkpoints: tuple[CheckpointRef, ...]
    checkpoint_indices: tuple[int, ...]  # slot of each checkpoint along the store's `checkpoint` dim
    data_spec: str
    n_samples: int
    layers: tuple[int, ...]
    tokens: tuple[int, ...] | None
    hook_modules: tuple[str, ...] | None
    dtype: str
    batch_size: int
    layout: StoreLayout
    storage_options: dict = field(default_factory=dict)
    precision: str = "float32"  # the model's compute dtype
    data_options: dict = field(default_factory=dict)  # SourceOptions fields: seq_len, padding, samples, seed
    loss: LossSpec | None = None  # with --gradients: the loss whose ∂L/∂h is recorded (SPEC section 5)
    gradient_dtype: str = DEFAULT_GRADIENT_DTYPE  # storage dtype of the gradients (--gradient-dtype)

    @property
    def n_blocks(self) -> int:
        return self.layout.n_blocks(self.n_samples)


def missing_blocks(plan: StorePlan) -> list[tuple[int, int]]:
    """(position in plan.checkpoints, block) pairs that have no valid commit record."""
    commits = read_commits(store_records(plan.url, plan.storage_options))
    missing = []
    for position, (ref, index) in enumerate(zip(plan.checkpoints, plan.checkpoint_indices, strict=True)):
        for block in range(plan.n_blocks):
            record = commits.get((index, block))
            if record is None or record.get("sha256") != ref.sha256:
                missing.append((position, block))
    return missing
