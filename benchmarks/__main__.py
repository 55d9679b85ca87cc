"""`python -m benchmarks [--size small] [--device cpu|cuda] [--only ROWS]`: run the suite, print a
markdown table, write benchmarks/results/<host-kind>-<date>.json."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import time
import traceback

from benchmarks.common import RESULTS

ROWS = ("machine", "ingest", "gradients", "analysis", "oocore", "randomized", "scaling", "sweep", "language", "loader",
        "cka", "cluster")


def host_kind(device: str) -> str:
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0).replace(" ", "-").lower()
    return f"cpu-{os.cpu_count()}core"


def table(results: dict) -> str:
    lines = ["| row | measure | value |", "|---|---|---|"]
    for row, values in results["rows"].items():
        for key, value in values.items():
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"| {row} | {key} | {shown} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=("tiny", "small", "medium", "large"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--only", default=",".join(ROWS), help="comma-separated rows")
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/<host>-<date>.json)")
    args = parser.parse_args(argv)
    results = {"size": args.size, "device": args.device, "host": platform.node(), "cpu_count": os.cpu_count(),
               "date": time.strftime("%Y-%m-%d"), "rows": {}}
    for row in args.only.split(","):
        start = time.perf_counter()
        try:
            results["rows"][row] = importlib.import_module(f"benchmarks.{row}").run(args.size, args.device)
        except Exception as exc:  # a failed row is recorded, the suite goes on
            results["rows"][row] = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc()
        results["rows"][row]["row_seconds"] = time.perf_counter() - start
        print(f"{row}: done in {results['rows'][row]['row_seconds']:.1f} s", flush=True)
    path = args.out or str(RESULTS / f"{host_kind(args.device)}-{args.size}-{results['date']}.json")
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print(table(results))
    print(f"written: {path}")
    return results


if __name__ == "__main__":
    main()
