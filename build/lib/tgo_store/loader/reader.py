"""Reading ahead of the consumer: windows are filled on threads while earlier ones are drawn.

One background thread walks the windows in order; each window's pieces are read by a small
thread pool (zarr decoding and file reads release the GIL). At most ``slots`` windows are
alive at once (the one being drawn plus ``slots - 1`` read ahead): that is the memory bound.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_END = object()


class WindowReader:
    """Fill ``windows`` in order with ``fill(w, pool)``; hand them out with ``next()``, free with ``done()``."""

    def __init__(self, fill: Callable[[int, ThreadPoolExecutor], Any], windows: Sequence[int], slots: int,
                 threads: int) -> None:
        self._fill, self._windows = fill, list(windows)
        self._slots = threading.Semaphore(max(1, slots))
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="tgo-loader-read")
        self._thread = threading.Thread(target=self._run, name="tgo-loader-windows", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for w in self._windows:
                while not self._slots.acquire(timeout=0.1):
                    if self._stop.is_set():
                        return
                if self._stop.is_set():
                    return
                self._queue.put(self._fill(w, self._pool))
        except BaseException as exc:  # handed to the consumer, raised there
            self._queue.put(exc)
        finally:
            self._queue.put(_END)

    def next(self) -> Any:
        """The next filled window, or None at the end; a reader's exception is raised here."""
        item = self._queue.get()
        if item is _END:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def done(self) -> None:
        """The consumer dropped its window: one more may be read ahead."""
        self._slots.release()

    def close(self) -> None:
        self._stop.set()
        self._slots.release()
        self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)


class Prefetch:
    """Run an iterator on a thread, ``depth`` items ahead of the consumer (batches are gathered,
    converted and pinned there while the training step runs)."""

    def __init__(self, items: Any, depth: int) -> None:
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tgo-loader-batches", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
        finally:
            self._put(_END)
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Any:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()
