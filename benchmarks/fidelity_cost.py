"""What SPEC 8's extra baselines cost (issue 29): the demos' analysis with and without them, side by side.

`python -m benchmarks.fidelity_cost [--image STORE] [--text STORE] [--repeats 2] [--root DIR]`: on a
finished image demo's store and text demo's store (``tgo demo --out DIR``, ``tgo demo --text --out DIR``:
their ``activations.zarr``), runs the demo's analysis (``demo_metrics`` with the demo's own analysis
options; for the text demo also its compared ``pooled,frequency`` analysis without the first position
and its encoder's analysis, ``encoder/activations.zarr`` beside the decoder's) in a fresh process per run,
alternating (a) the default options and (b) ``isotropic_draws=0`` with ``tangent_bootstrap=0`` (no
``<metric>_isotropic`` baselines, no refitted bootstrap replicates). Each run writes its own results
store under ``--root`` (never beside the demo's). Wall and CPU seconds per run, the medians, the ratio
(a)/(b) and the load average around each run go to
``benchmarks/results/fidelity-cost-<host>-<date>.json``; issue 29 asks (a)/(b) <= 1.25.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS

DEFAULT_STORES = {"image": "/tmp/bench/image/activations.zarr", "text": "/tmp/bench/text/activations.zarr"}
# What the text demo analyses besides demo_metrics (tgo_app/demos/text.py, run_text_demo's ``without_first``).
TEXT_COMPARE = (("pooled,frequency", {"exclude_first": True}),)
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},  # (a): what `tgo demo` runs
    "extras_off": {"isotropic_draws": 0, "tangent_bootstrap": 0},  # (b): SPEC 8's baselines and refits off
}
# the child: one demo analysis in a fresh process (no in-process isotropic cache, its own CPU clock)
CHILD = """
import json, sys
from benchmarks.fidelity_cost import analyse_demo
print(json.dumps(analyse_demo(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))))
"""


def demo_options(kind: str) -> dict[str, Any]:
    """The analysis options the demo itself passes (the text demo caps its semi-NMF iterations)."""
    if kind != "text":
        return {}
    from tgo_app.demos.text import TextDemoConfig

    return dict(TextDemoConfig().analysis_options)


def analyse_demo(kind: str, store: str, out_dir: str, options: dict[str, Any]) -> dict[str, Any]:
    """The demo's analysis of ``store`` into ``out_dir`` (fresh) with ``options``: wall and CPU seconds."""
    from tgo_analysis.analyze import analyze
    from tgo_app.demos.image import demo_metrics
    from tgo_store.store.open import open_store

    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    load_before = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    ds = open_store(store)
    analyze(ds, demo_metrics(ds), out=str(out / "metrics.zarr"), progress=False, **demo_options(kind), **options)
    main_wall = time.perf_counter() - wall
    for i, (compared, extra) in enumerate(TEXT_COMPARE if kind == "text" else ()):
        analyze(open_store(store), compared, out=str(out / f"compare-{i}.zarr"), progress=False, **extra, **options)
    encoder = encoder_store(store) if kind == "text" else None
    encoder_wall = time.perf_counter()
    if encoder is not None:  # the text demo's second model, analysed as the demo does (tgo_app.demos.text)
        from tgo_app.demos.text import encoder_metrics

        ds = open_store(encoder)
        analyze(ds, encoder_metrics(ds), out=str(out / "encoder.zarr"), progress=False, **demo_options(kind),
                **options)
    result = {"wall_s": time.perf_counter() - wall, "main_analysis_wall_s": main_wall, "cpu_s": time.process_time() - cpu,
              "encoder_wall_s": time.perf_counter() - encoder_wall if encoder is not None else None,
              "load_before": load_before, "load_after": os.getloadavg()[0]}
    shutil.rmtree(out, ignore_errors=True)
    return result


def encoder_store(store: str) -> str | None:
    """The text demo's encoder store beside its decoder's (``<demo>/encoder/activations.zarr``), if there."""
    path = Path(store).parent / "encoder" / "activations.zarr"
    return str(path) if path.exists() else None


def run_once(kind: str, store: str, out_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """``analyse_demo`` in a fresh process with the CLI's thread settings (OMP_WAIT_POLICY=PASSIVE)."""
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    done = subprocess.run([sys.executable, "-c", CHILD, kind, store, str(out_dir), json.dumps(options)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "child failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per configuration, the ratios (a)/(b) of wall and CPU seconds, and the same per pair."""
    out: dict[str, Any] = {}
    for config in CONFIGS:
        mine = [r for r in runs if r["config"] == config]
        out[config] = {k: statistics.median(r[k] for r in mine) for k in ("wall_s", "cpu_s")}
    for key in ("wall_s", "cpu_s"):
        out[f"ratio_{key}"] = out["default"][key] / out["extras_off"][key]
    default, off = ([r for r in runs if r["config"] == c] for c in CONFIGS)
    for key in ("wall_s", "cpu_s"):  # a pair's two runs are adjacent: the machine's drift mostly cancels
        pairs = [a[key] / b[key] for a, b in zip(default, off, strict=True)]
        out[f"ratio_{key}_per_pair"] = pairs
        out[f"ratio_{key}_median_of_pairs"] = statistics.median(pairs)
    return out


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def commit() -> str:
    """The checkout measured (its HEAD; '+dirty' with uncommitted changes)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=RESULTS).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain", "--", "..", "../../tgo_analysis") else "")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=DEFAULT_STORES["image"], help="the image demo's activations.zarr ('' skips)")
    parser.add_argument("--text", default=DEFAULT_STORES["text"], help="the text demo's activations.zarr ('' skips)")
    parser.add_argument("--repeats", type=int, default=2, help="pairs (a, b) per demo; the order alternates")
    parser.add_argument("--root", default="/tmp/tgo-fidelity-cost", help="scratch folder of the results stores")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/fidelity-cost-...)")
    args = parser.parse_args(argv)
    date = time.strftime("%Y-%m-%d")
    out: dict[str, Any] = {"what": __doc__.splitlines()[0], "date": date, "cpu_count": os.cpu_count(),
                           "configs": CONFIGS, "text_compare": [list(c) for c in TEXT_COMPARE],
                           "commit": commit(), "uptime_before": uptime(), "demos": {}}
    path = Path(args.out) if args.out else RESULTS / f"fidelity-cost-cpu-{os.cpu_count()}core-{date}.json"
    for kind, store in (("image", args.image), ("text", args.text)):
        if not store:
            continue
        runs = []
        for repeat in range(args.repeats):
            order = list(CONFIGS) if repeat % 2 == 0 else list(CONFIGS)[::-1]  # a b, b a, ...: drift cancels
            for config in order:
                run = run_once(kind, store, Path(args.root) / kind, CONFIGS[config])
                runs.append({"config": config, "repeat": repeat, **run})
                print(f"{kind} {config}: wall {run['wall_s']:.1f} s, cpu {run['cpu_s']:.1f} s, "
                      f"load {run['load_before']:.2f}", flush=True)
        out["demos"][kind] = {"store": store, "runs": runs, **summarise(runs)}
        out["uptime_after"] = uptime()
        path.write_text(json.dumps(out, indent=1))  # each demo as soon as it is done
        print(f"{kind}: (a)/(b) wall {out['demos'][kind]['ratio_wall_s']:.3f}, "
              f"cpu {out['demos'][kind]['ratio_cpu_s']:.3f}; written {path}", flush=True)
    return out


if __name__ == "__main__":
    main()
