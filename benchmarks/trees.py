"""`python -m benchmarks.trees OLD NEW [--only analysis,language,cluster] [--size small]`: the same
benchmark rows of two tgo trees in one run, side by side (issue 28: no row slower).

Each tree runs its own ``python -m benchmarks`` with ``PYTHONPATH`` set to the tree (so its own
code, and its own row definitions, are measured), one after the other, alternating ``--rounds``
times so a drift in machine load hits both; the table gives every numeric measure of both and
NEW / OLD (for seconds lower is better, for rates higher). Make the old tree with
``git worktree add /tmp/tgo-old <commit>``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import write_json


def run_tree(root: Path, only: str, size: str, device: str, out: Path) -> dict:
    """One tree's rows, with the machine's load averages (1, 5, 15 min) before and after (a shared machine)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    load_before = os.getloadavg()
    subprocess.run([sys.executable, "-m", "benchmarks", "--only", only, "--size", size, "--device", device,
                    "--out", str(out)], cwd=root, env=env, check=True)
    rows = json.loads(out.read_text())["rows"]
    rows["load"] = {"before_1min": load_before[0], "after_1min": os.getloadavg()[0]}
    return rows


def side_by_side(old: dict, new: dict) -> list[str]:
    lines = ["| row | measure | old | new | new / old |", "|---|---|---|---|---|"]
    for row in sorted(set(old) | set(new)):
        a, b = old.get(row, {}), new.get(row, {})
        for key in sorted(set(a) | set(b)):
            x, y = a.get(key), b.get(key)
            if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
                ratio = f"{y / x:.3g}" if x else "-"
                lines.append(f"| {row} | {key} | {x:.4g} | {y:.4g} | {ratio} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--only", default="analysis,language,cluster,oocore")
    parser.add_argument("--size", default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="JSON file: every round's rows of both trees, the table")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="tgo-trees-") as tmp:
        for i in range(args.rounds):
            for tag, root in (("old", args.old), ("new", args.new)):
                runs[tag].append(run_tree(root.resolve(), args.only, args.size, args.device,
                                          Path(tmp) / f"{tag}-{i}.json"))
    best = {tag: {row: {k: min(r[row].get(k, float("inf")) for r in rs) if "seconds" in k else rs[-1][row].get(k)
                        for k in rs[-1][row]} for row in rs[-1]} for tag, rs in runs.items()}
    lines = side_by_side(best["old"], best["new"])
    print("\n".join(lines))
    if args.out:
        write_json(args.out, {"old": str(args.old), "new": str(args.new), "only": args.only, "size": args.size,
                              "rounds": runs, "best": best, "table": lines})
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
