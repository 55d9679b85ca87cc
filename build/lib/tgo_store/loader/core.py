"""``ActivationLoader``: one layer of a store as a globally shuffled, resumable training set (SPEC 7).

The pieces it reads are the store's shards, in a seeded random order; a mixing buffer of
``buffer_size`` draws batches from many pieces at once (``plan`` fixes the order, ``mixing``
holds the window, ``reader`` reads ahead on threads, ``state`` resumes). It is a torch
``IterableDataset``: in a ``DataLoader(loader, batch_size=None, num_workers=n)`` each worker
takes disjoint windows and the epoch stays exact.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from tgo_store.errors import TgoError
from tgo_store.loader.mixing import Window, parse_buffer, to_torch
from tgo_store.loader.plan import EpochPlan
from tgo_store.loader.reader import Prefetch, WindowReader
from tgo_store.loader.source import LayerSource
from tgo_store.loader.state import LoaderState, fingerprint
from tgo_store.loader.stats import Stats, results_scale, streamed
from tgo_store.store.validity import PositionChoice

DEFAULT_BUFFER = "512MiB"


class ActivationLoader(IterableDataset):
    """Batches of the valid positions of one layer: dicts of torch tensors.

    Each batch has ``activations`` float32 (B, D) and ``sample``, ``token`` int64 (B,), plus
    ``token_id`` and ``label`` where the store has them and ``checkpoint`` (the training step)
    when several checkpoints are chosen. One epoch yields every chosen valid position exactly
    once (padding never; ``exclude_special`` / ``exclude_first`` as in analysis).

    Selection: ``checkpoint`` is an index along the checkpoint dim (-1: the last), ``checkpoints``
    a list of them; ``tokens`` token indices (None: all); ``samples`` sample indices (None: all;
    e.g. a train / held-out split).

    Memory and speed: ``buffer_size`` (positions as an int, or bytes as "512MiB") is shared by the
    window being drawn and the ``read_ahead`` windows read ahead on ``threads`` threads; beyond it
    each reading thread holds about two pieces (the store's shards) while it decodes, and
    ``prefetch`` batches are gathered ahead on another thread. A batch draws from about
    window / tokens-per-sample samples. ``pin_memory`` (None: when CUDA is present, in the main
    process) pins batches; ``device`` moves them there.

    Statistics: ``mean`` / ``std`` / ``scale`` (see ``stats``), ``normalize`` yields
    (x − mean) / scale, ``results`` is an analysis results store to take ``scale`` from,
    ``progress`` shows a bar during their pass. Read ``loader.mean`` before handing the loader to
    a ``DataLoader`` so that its workers inherit the statistics instead of each computing them.

    ``state_dict()`` / ``load_state_dict()`` resume mid-epoch; ``loader.epoch = k`` reshuffles.
    """

    def __init__(self, store: Any, layer: int, checkpoint: int = -1, tokens: Any = None, batch_size: int = 4096,
                 shuffle: bool = True, seed: int = 0, exclude_special: bool = False, exclude_first: bool = False, *,
                 checkpoints: Sequence[int] | None = None, buffer_size: int | str = DEFAULT_BUFFER,
                 read_ahead: int = 1, threads: int | None = None, prefetch: int = 2, drop_last: bool = False,
                 pin_memory: bool | None = None, device: Any = None, normalize: bool = False,
                 samples: Any = None, results: Any = None, storage_options: dict | None = None,
                 progress: bool = False) -> None:
        super().__init__()
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
            raise TgoError(f"batch_size must be a positive integer, got {batch_size!r}; pass e.g. 4096")
        if read_ahead < 0:
            raise TgoError(f"read_ahead must be 0 or more windows, got {read_ahead}; pass e.g. 1")
        self.several = checkpoints is not None and len(checkpoints) > 1
        self.source = LayerSource(store, layer, checkpoint if checkpoints is None else checkpoints, tokens,
                                  PositionChoice(bool(exclude_special), bool(exclude_first)), storage_options,
                                  samples)
        self.batch_size = int(batch_size)
        self.read_ahead = int(read_ahead)
        self.prefetch = max(1, int(prefetch))
        self.threads = int(threads) if threads else min(4, os.cpu_count() or 1)
        slot = parse_buffer(buffer_size, self.source.bytes_per_position(self.several)) // (1 + self.read_ahead)
        window = max(1, slot // self.batch_size) * self.batch_size
        self.plan = EpochPlan(self.source.counts, window, self.batch_size, bool(shuffle), int(seed), bool(drop_last))
        if self.plan.total == 0:
            raise TgoError(f"layer {layer} of {self.source.where} has no valid position with this choice; "
                           "choose other tokens or drop exclude_special / exclude_first")
        self.pin_memory = pin_memory
        self.device = device
        self.normalize = bool(normalize)
        self.results = results
        self.progress = bool(progress)
        self._fingerprint = fingerprint(
            store=self.source.url or "dataset", layer=self.source.layer, checkpoints=self.source.checkpoints,
            tokens=self.source.tokens, samples=self.source.chosen_samples,
            choice=[self.source.choice.exclude_special, self.source.choice.exclude_first],
            batch_size=self.batch_size, window=window, shuffle=self.plan.shuffle, seed=self.plan.seed,
            drop_last=self.plan.drop_last, counts=self.source.counts)
        self._state = LoaderState(fingerprint=self._fingerprint)
        self._stats: Stats | None = None
        self._scale: float | None = None

    # -- sizes --------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Batches per epoch."""
        return self.plan.n_batches()

    @property
    def n_positions(self) -> int:
        """Positions per epoch (the last batch holds the remainder unless ``drop_last``)."""
        return self.plan.total

    @property
    def n_features(self) -> int:
        return self.source.n_features

    @property
    def window(self) -> int:
        """Positions per mixing window (a multiple of batch_size)."""
        return self.plan.window

    # -- epoch and state ----------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self._state.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.set_epoch(value)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch``; the same epoch keeps its position (so a resumed loop may call it)."""
        if int(epoch) != self._state.epoch:
            self._state = LoaderState(int(epoch), 0, self._fingerprint)

    def state_dict(self, batches: int | None = None) -> dict[str, Any]:
        """Where the epoch stands. Iterated directly, the loader counts the batches it handed out;
        through a ``DataLoader`` with workers pass ``batches``, the number the training loop took."""
        taken = self._state.batches if batches is None else int(batches)
        return LoaderState(self._state.epoch, taken, self._fingerprint).to_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._state = LoaderState.from_dict(state, self._fingerprint, len(self))

    # -- iteration ----------------------------------------------------------------------------
    def _fill(self, epoch: int) -> Any:
        fields = self.source.fields(self.several)

        def fill(w: int, pool: ThreadPoolExecutor) -> Window:
            win = Window.allocate(w, fields, self.plan.window_size(w), self.source.n_features,
                                  self.plan.window_permutation(epoch, w))
            offset, futures = 0, []
            for part in self.plan.window_parts(epoch, w):
                futures.append(pool.submit(self.source.read_part, part, win.arrays, offset))
                offset += part.hi - part.lo
            for future in futures:
                future.result()
            return win

        return fill

    def _start(self) -> tuple[list[int], int, bool]:
        """The windows this process reads, the batches to skip in them, and whether it counts batches."""
        info = get_worker_info()
        if info is None:
            windows, skip = list(range(self.plan.n_windows)), self._state.batches
        else:
            given, first = self.plan.worker_taken(self._state.batches, info.num_workers)
            role = (first + info.id) % info.num_workers
            windows, skip = self.plan.worker_windows(role, info.num_workers), given[role]
        while windows and skip >= self.plan.window_batches(windows[0]):
            skip -= self.plan.window_batches(windows.pop(0))
        return windows, skip, info is None

    def _produce(self, windows: list[int], skip: int, pin: bool) -> Iterator[dict[str, torch.Tensor]]:
        """The batches of these windows from batch ``skip`` on (runs on the prefetch thread)."""
        mean, scale = (self.mean.numpy(), np.float32(self.scale)) if self.normalize else (None, None)
        reader = WindowReader(self._fill(self._state.epoch), windows, 1 + self.read_ahead, self.threads)
        try:
            while (win := reader.next()) is not None:
                n = self.plan.window_batches(win.index)
                for batch in win.batches(self.batch_size, skip, n - skip):
                    if mean is not None:
                        batch["activations"] -= mean
                        batch["activations"] /= scale
                    yield to_torch(batch, pin, self.device)
                skip = 0
                del win
                reader.done()
        finally:
            reader.close()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        windows, skip, counting = self._start()
        pin = (torch.cuda.is_available() and counting) if self.pin_memory is None else bool(self.pin_memory)
        batches = Prefetch(self._produce(windows, skip, pin), self.prefetch)
        try:
            for batch in batches:
                if counting:
                    self._state.batches += 1
                yield batch
            if counting:
                self._state.batches = 0  # the epoch is complete: iterating again starts it over
        finally:
            batches.close()

    # -- normalisation ------------------------------------------------------------------------
    def _pass(self) -> Stats:
        if self._stats is None:
            self._stats = streamed(self.source, self.several, self.progress)
        return self._stats

    @property
    def mean(self) -> torch.Tensor:
        """Per-feature mean (D,) float32 over an epoch's positions (one streamed float64 pass, cached)."""
        return torch.from_numpy(self._pass().mean.astype(np.float32))

    @property
    def std(self) -> torch.Tensor:
        """Per-feature unbiased std (D,) float32."""
        return torch.from_numpy(self._pass().std.astype(np.float32))

    @property
    def scale(self) -> float:
        """sqrt(trace(C) / D), C the unbiased covariance: the RMS of a centred entry (see stats.py);
        from ``results`` when it holds this layer's pooled spectrum over the same positions."""
        if self._scale is None:
            found = results_scale(self.results, self.source) if self.results is not None else None
            self.scale_source = "results" if found is not None else "pass"
            self._scale = found if found is not None else self._pass().scale
        return self._scale

    def __repr__(self) -> str:
        return (f"ActivationLoader({self.source.where}, layer={self.source.layer}, "
                f"checkpoints={self.source.checkpoints.tolist()}, positions={self.n_positions}, "
                f"batch_size={self.batch_size}, batches={len(self)}, window={self.window}, epoch={self.epoch})")
