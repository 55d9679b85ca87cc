"""The order of an epoch: a pure function of (seed, epoch), so that any batch can be found again.

An epoch is cut in three steps, each seeded and each cheap to recompute:

1. the pieces (shards) are put in a random order (``piece_order``);
2. their valid positions, concatenated in that order, are cut into windows of ``window``
   positions, a multiple of the batch size (``window_parts``): a window is what the mixing
   buffer holds, so memory is bounded by the window, not by the store;
3. each window's positions are permuted (``window_permutation``) and cut into batches.

So batch ``i`` of window ``w`` is fixed by (seed, epoch, w, i) alone: resuming needs only the
number of batches already taken, and every window but the last holds whole batches, so an
epoch yields every position once and ``ceil(total / batch_size)`` batches. Workers of a torch
``DataLoader`` take windows ``j, j + n, ...`` (disjoint, together the whole epoch), and the
DataLoader hands their batches out round-robin, which ``worker_taken`` inverts for a resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tgo_store.loader.source import Part


@dataclass(frozen=True)
class EpochPlan:
    counts: np.ndarray  # valid positions per piece, in the pieces' natural order
    window: int  # positions per window: a multiple of batch_size
    batch_size: int
    shuffle: bool
    seed: int
    drop_last: bool = False

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @property
    def n_windows(self) -> int:
        return math.ceil(self.total / self.window)

    def window_size(self, w: int) -> int:
        return min(self.window, self.total - w * self.window)

    def window_batches(self, w: int) -> int:
        full, rest = divmod(self.window_size(w), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def n_batches(self) -> int:
        return sum(self.window_batches(w) for w in range(self.n_windows))

    def _rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *keys])

    def piece_order(self, epoch: int) -> np.ndarray:
        n = len(self.counts)
        return self._rng(epoch).permutation(n) if self.shuffle else np.arange(n)

    def window_parts(self, epoch: int, w: int) -> list[Part]:
        """The (piece, lo, hi) ranges whose positions fill window w, in stream order."""
        order = self.piece_order(epoch)
        ends = np.cumsum(self.counts[order])
        starts = ends - self.counts[order]
        lo, hi = w * self.window, w * self.window + self.window_size(w)
        first = int(np.searchsorted(ends, lo, side="right"))
        parts = []
        for k in range(first, len(order)):
            if starts[k] >= hi:
                break
            a, b = max(lo, int(starts[k])), min(hi, int(ends[k]))
            if b > a:
                parts.append(Part(int(order[k]), a - int(starts[k]), b - int(starts[k])))
        return parts

    def window_permutation(self, epoch: int, w: int) -> np.ndarray:
        size = self.window_size(w)
        return self._rng(epoch, w, 1).permutation(size) if self.shuffle else np.arange(size)

    def worker_windows(self, worker: int, n_workers: int) -> list[int]:
        return list(range(worker, self.n_windows, n_workers))

    def worker_taken(self, taken: int, n_workers: int) -> tuple[list[int], int]:
        """After ``taken`` batches of a round-robin DataLoader: the batches each worker role had
        delivered, and the role whose turn is next.

        torch's DataLoader asks its workers in turn and skips exhausted ones, so after ``taken``
        batches every role has given one per round it took part in. A resumed DataLoader asks
        worker 0 first, so worker j takes role (next + j) mod n and the order goes on unchanged.
        """
        counts = np.array([sum(self.window_batches(w) for w in self.worker_windows(j, n_workers))
                           for j in range(n_workers)], dtype=np.int64)
        given = np.zeros(n_workers, dtype=np.int64)
        left, first = int(taken), 0
        while left > 0:
            active = np.flatnonzero(given < counts)
            if active.size == 0:
                break
            if left >= active.size:
                step = max(1, min(int((counts[active] - given[active]).min()), left // active.size))
                given[active] += step
                left -= step * active.size
            else:
                given[active[:left]] += 1
                first, left = int(active[left]), 0
        return given.tolist(), first
