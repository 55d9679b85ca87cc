"""`python -m benchmarks.text_demo_speed OLD NEW [--quick]`: the wall time of `tgo demo --text` of two
trees, one after the other in one run (issue 33: the decoder + encoder demo within 1.5x of the
decoder-only one).

Each tree runs its own CLI (``python -m tgo_app.cli demo --text``, ``PYTHONPATH`` set to the tree) into
a fresh folder, so both train, ingest, analyse and report from scratch; the stage times come from the
demo's own summary line. Make the old tree with ``git worktree add /tmp/tgo-text-old <commit>``.
Writes benchmarks/results/text-demo-speed-<date>.json with both runs, the load average before
each, and NEW / OLD.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS

STAGES = re.compile(r"^time: (.*)$", re.M)
STAGE = re.compile(r"(.+) ([\d.]+) s$")  # "train encoder 61.3 s"


def run_tree(root: Path, out: Path, quick: bool) -> dict:
    """One fresh `tgo demo --text` of the tree at ``root``: wall seconds, stages, load before."""
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_WAIT_POLICY": "PASSIVE"}
    command = [sys.executable, "-m", "tgo_app.cli", "demo", "--text", "--quiet", "--out", str(out)]
    if quick:
        command.append("--quick")
    load = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    found = STAGES.search(done.stdout)
    stages = {m.group(1): float(m.group(2)) for part in (found.group(1).split(", ") if found else [])
              if (m := STAGE.match(part))}
    return {"wall_s": round(wall, 1), "stages_s": stages, "load_average_before": round(load, 2)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep both demo folders here (KEEP/old, KEEP/new), e.g. for "
                                                  "`python -m benchmarks.encoder_decoder KEEP/new`")
    args = parser.parse_args(argv)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="tgo-text-speed-") as tmp:
        where = args.keep or Path(tmp)
        for tag, root in (("old", args.old), ("new", args.new)):
            if (where / tag).exists():
                raise SystemExit(f"{where / tag} exists: each demo must start from scratch; remove it or choose "
                                 "another --keep")
            runs[tag] = run_tree(root.resolve(), where / tag, args.quick)
            print(tag, runs[tag], flush=True)
    date = time.strftime("%Y-%m-%d")
    result = {"date": date, "what": f"`tgo demo --text{' --quick' if args.quick else ''}` of two trees, one after "
                                    "the other, each from scratch in a fresh folder; 2-core machine, no GPU",
              "old_tree": str(args.old), "new_tree": str(args.new), "runs": runs,
              "new_over_old": round(runs["new"]["wall_s"] / runs["old"]["wall_s"], 3)}
    name = f"text-demo-speed-{'quick-' if args.quick else ''}cpu-2core-{date}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=1))
    print(f"new / old wall time: {result['new_over_old']}; written {RESULTS / name}")
    return result


if __name__ == "__main__":
    main()
