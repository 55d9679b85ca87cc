"""Where the tangent bootstrap's CPU time goes (issue 29's cost), per part, on a demo store.

`python -m benchmarks.bootstrap_profile STORE [--checkpoint -1] [--out FILE]`: runs the demo's own
analysis (``demo_metrics`` with the demo's analysis options) of one checkpoint of ``STORE`` once
with the defaults, and adds up the CPU seconds of the threads (``time.thread_time``, so the engine's
worker threads count) spent in each part of the bootstrap: the replicates' semi-NMF refits, their
frames (non-negative codes of the null pools, Q_P), the stability twin, and the replicates' scoring
(the aggregate's parts). Parts nest as named (``frames`` inside ``refits``, ``frame_codes`` and ``frame_pca``
inside ``frames``); the process's CPU seconds are the total. Writes
``benchmarks/results/bootstrap-profile-<host>-<date>.json``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, write_json

_TOTALS: dict[str, float] = collections.defaultdict(float)
_CALLS: dict[str, int] = collections.defaultdict(int)
_LOCK = threading.Lock()


def _timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            with _LOCK:
                _TOTALS[label] += time.thread_time() - start
                _CALLS[label] += 1
    return run


@contextlib.contextmanager
def _patched(module: Any, name: str, label: str) -> Iterator[None]:
    original = getattr(module, name)
    setattr(module, name, _timed(label, original))
    try:
        yield
    finally:
        setattr(module, name, original)


def profile(store: str, checkpoint: int) -> dict[str, Any]:
    """CPU seconds per bootstrap part, and the process's, for one checkpoint's demo analysis."""
    import numpy as np

    import tgo_analysis.statistics.tangent as tangent
    import tgo_analysis.statistics.tangent_fit as tangent_fit
    from tgo_analysis.analyze import analyze
    from tgo_app.demos.image import demo_metrics
    from tgo_app.demos.text import TextDemoConfig
    from tgo_store.store.open import open_store

    ds = open_store(store)
    at = int(np.arange(ds.sizes["checkpoint"])[checkpoint])
    options = dict(TextDemoConfig().analysis_options) if "gradients" in ds.data_vars else {}
    parts = [(tangent_fit, "refit_replicates", "refits"), (tangent_fit, "make_frame", "frames"),
             (tangent_fit, "nonnegative_codes", "frame_codes"), (tangent_fit, "pca_basis", "frame_pca"),
             (tangent_fit, "pca_bases", "replicate_pca"),
             (tangent, "finish_fit", "finish_unit"), (tangent, "scored_frames", "scoring")]
    _TOTALS.clear()
    _CALLS.clear()
    with contextlib.ExitStack() as stack:
        for module, name, label in parts:
            stack.enter_context(_patched(module, name, label))
        wall, cpu = time.perf_counter(), time.process_time()
        analyze(ds, demo_metrics(ds), out=None, progress=False, checkpoints=[at], **options)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    units = int(ds.sizes["layer"])
    return {"checkpoint": at, "units": units, "options": options, "process_cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3), "cpu_s": {k: round(v, 3) for k, v in _TOTALS.items()},
            "calls": dict(_CALLS),
            "note": "frames and frame_codes/frame_pca also count the main fit's frame (one call per unit); replicate_pca: "
                    "every replicate's Q_P of a finish task at once; "
                    "finish_unit = refits + the stability twin (its tasks); scoring = the aggregate's parts"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("store")
    parser.add_argument("--checkpoint", type=int, default=-1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import socket

    out = profile(args.store, args.checkpoint)
    out = {"what": __doc__.split("\n")[0], "store": args.store, "date": datetime.date.today().isoformat(), **out}
    path = args.out or RESULTS / f"bootstrap-profile-{socket.gethostname()}-{out['date']}.json"
    write_json(path, out)
    for label, seconds in out["cpu_s"].items():
        print(f"{label:>12}: {seconds:7.3f} CPU s in {out['calls'][label]} calls")
    print(f"process: {out['process_cpu_s']} CPU s, {out['wall_s']} s wall; written {path}")


if __name__ == "__main__":
    main()
