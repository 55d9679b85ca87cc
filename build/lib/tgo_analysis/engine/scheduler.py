"""Where the Dask graph runs: threads (default), a LocalCluster, or an existing cluster."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dask
import dask.threaded

from tgo_store.errors import TgoError


@contextlib.contextmanager
def scheduler_context(address: str | None = None, workers: int | None = None,
                      memory_limit: str | None = None, threads_per_worker: int = 1) -> Iterator[str]:
    """Yield a description of the scheduler in use; everything computed inside runs there."""
    if address is None and workers is None and memory_limit is None:
        # the function itself, not the name "threads": a name makes dask import distributed to
        # look for a client (0.5 s on a 2-core machine, a third of a small analysis)
        with dask.config.set(scheduler=dask.threaded.get):
            yield "threaded"
        return
    from distributed import Client, LocalCluster

    if address is not None:
        try:
            client = Client(address, timeout="5s", set_as_default=True)
        except (OSError, TimeoutError) as exc:
            raise TgoError(f"cannot reach the Dask scheduler at {address} ({type(exc).__name__}); "
                           "check the address and that the scheduler is running") from exc
        with client:
            yield f"distributed {address}"
        return
    cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=threads_per_worker,
                           memory_limit=memory_limit or "auto", processes=True, dashboard_address=None)
    with cluster, Client(cluster, set_as_default=True):
        yield f"LocalCluster workers={workers or 2} threads_per_worker={threads_per_worker} memory_limit={memory_limit or 'auto'}"
