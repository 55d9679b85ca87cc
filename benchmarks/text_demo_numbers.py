"""The text demo's SPEC 8 numbers as a small results file the documents quote (issue 29).

`python -m benchmarks.text_demo_numbers [RESULTS] [--out FILE]`: reads a finished ``tgo demo --text``
results store (default /tmp/bench/text/metrics.zarr) and writes, per (checkpoint, layer), the
tangent rows with their intervals and what survives SPEC 8 (``tangent_models.verdicts``), and the
layer-by-layer CKA matrices of the last checkpoint, biased beside debiased, per representation, to
``benchmarks/results/text-demo-tangent-cpu-<date>.json``. Every number is the results store's, except
the verdicts and E_T against the centred PCA baseline that ``verdicts`` derives from them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS
from benchmarks.tangent_models import INTERVALS, SCALARS, _value, summary, verdicts

DEFAULT_RESULTS = "/tmp/bench/text/metrics.zarr"
CKA = ("cka_layers", "cka_layers_debiased")


def numbers(results: str) -> dict[str, Any]:
    """The tangent rows of every (checkpoint, layer) and the last checkpoint's CKA matrices."""
    import xarray as xr

    res = xr.open_zarr(results)
    rows = []
    for ci, step in enumerate(res["checkpoint"].values):
        for li, layer in enumerate(res["layer"].values):
            row: dict[str, Any] = {"step": int(step), "layer": int(layer)}
            if "layer_name" in res.coords:
                row["layer_name"] = str(res["layer_name"].values[li])
            for key in (*SCALARS, *INTERVALS):
                if key in res:
                    row[key] = _value(res[key].isel(checkpoint=ci, layer=li).values)
            row.update(verdicts(row))
            rows.append(row)
    cka = {}
    for name in CKA:
        if name in res:
            for r, representation in enumerate(res["representation"].values):
                cka[f"{name}_{representation}_last"] = _value(res[name].isel(checkpoint=-1, representation=r).values)
    for r, representation in enumerate(res["representation"].values if set(CKA) <= set(res) else ()):
        bias = res[CKA[0]] - res[CKA[1]]  # biased minus debiased: what the bias adds
        cka[f"cka_bias_{representation}_last"] = _value(bias.isel(checkpoint=-1, representation=r).values)
    attrs = {k: _value(v) if not isinstance(v, str | dict | list) else v for k, v in res.attrs.items()
             if k.startswith(("tangent_bootstrap", "cka")) or k in ("tangent_rank", "tangent_iterations",
                                                                       "tangent_fit_samples", "tangent_held_out_samples")}
    last = [row for row in rows if row["step"] == rows[-1]["step"]]
    shape = json.loads(res.attrs.get("tgo_config", "{}")).get("shape")  # the analysed store's (C, L, N, T, D)
    return {"results": results, "store_shape": shape, "tangent": rows, "summary": summary(rows), "summary_last_checkpoint": summary(last),
            "cka": cka, "attrs": attrs}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default=DEFAULT_RESULTS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    out = {"date": time.strftime("%Y-%m-%d"), **numbers(args.results)}
    path = Path(args.out) if args.out else RESULTS / f"text-demo-tangent-cpu-{out['date']}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"written {path}")
    return out


if __name__ == "__main__":
    main()
