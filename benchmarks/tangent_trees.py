"""The tangent row of two trees on the same footing (issue 28: is the structure slower, or the new rules?).

`python -m benchmarks.tangent_trees OLD NEW [--runs 3] [--out FILE]`: the cluster row's tangent
analysis (``benchmarks.cluster``'s gradient store, ``rank 4, subsample 2048, control_draws 8``) on a
2-worker ``LocalCluster``, in a fresh process per tree and configuration, each run from inside its
tree (a ``python -c`` child imports the package of its working directory first). Configurations:
each tree's defaults, then both with the bootstrap off (``tangent_bootstrap 0``: the old tree's
fixed-basis bootstrap and the new tree's refits both go) and the new tree also with Ding's plain
semi-NMF (``tangent_sparsity 0``), which is what the old tree fits. Per run: the client's seconds
from connecting to the first task of a unit's graph, and the analysis' seconds; the first run of a
process warms the workers and is reported apart.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, write_json

CHILD = """
import json, sys, time
import tgo_analysis, tgo_store
from distributed import Client, LocalCluster, get_task_stream
store, runs, extra = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
params = {"tangent": {"rank": 4, "subsample": 2048, "control_draws": 8, **extra}}
def name(key):
    return key[0] if isinstance(key, tuple) else key
out = []
if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        for _ in range(runs + 1):
            with Client(cluster.scheduler_address) as client, get_task_stream(client) as stream:
                start, t0 = time.time(), time.perf_counter()
                tgo_analysis.analyze(tgo_store.open_store(store), "tangent", scheduler=cluster.scheduler_address,
                                     progress=False, params=params)
                total = time.perf_counter() - t0
            first = min(s["start"] for task in stream.data if str(name(task["key"])).startswith(("unit_task", "tgo-"))
                        for s in task["startstops"] if s["action"] == "compute")
            out.append({"first_task_seconds": first - start, "seconds": total})
    print(json.dumps(out))
"""
CONFIGS = {"old": [("defaults", {}), ("bootstrap_off", {"bootstrap": 0})],
           "new": [("defaults", {}), ("bootstrap_off", {"bootstrap": 0}),
                   ("bootstrap_off_plain_fit", {"bootstrap": 0, "sparsity": 0})]}


def run_tree(root: Path, store: Path, runs: int, extra: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(store), str(runs), json.dumps(extra)], cwd=root, env=env,
                          capture_output=True, text=True, check=True)
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    warm = rows[1:]
    return {"cold": rows[0], "runs": warm,
            "median_seconds": statistics.median(r["seconds"] for r in warm),
            "median_first_task_seconds": statistics.median(r["first_task_seconds"] for r in warm)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from benchmarks.cluster import write_gradient_store

    out: dict[str, Any] = {"what": __doc__.split("\n")[0], "date": datetime.date.today().isoformat(),
                           "old": str(args.old), "new": str(args.new), "load_before": os.getloadavg()[0], "trees": {}}
    with tempfile.TemporaryDirectory() as tmp:
        store = write_gradient_store(Path(tmp) / "grads.zarr")
        for side, root in (("old", args.old.resolve()), ("new", args.new.resolve())):
            for label, extra in CONFIGS[side]:
                row = run_tree(root, store, args.runs, extra)
                out["trees"].setdefault(side, {})[label] = {"options": extra, **row}
                print(f"{side} {label}: {row['median_seconds']:.3f} s, first task {row['median_first_task_seconds']:.3f} s")
    out["load_after"] = os.getloadavg()[0]
    old, new = out["trees"]["old"], out["trees"]["new"]
    out["ratios_new_over_old"] = {label: new[label]["median_seconds"] / old["bootstrap_off"]["median_seconds"]
                                  for label in ("bootstrap_off", "bootstrap_off_plain_fit")}
    out["ratios_new_over_old"]["defaults"] = new["defaults"]["median_seconds"] / old["defaults"]["median_seconds"]
    write_json(args.out or RESULTS / f"tangent-trees-{out['date']}.json", out)
    print(json.dumps(out["ratios_new_over_old"]))


if __name__ == "__main__":
    main()
