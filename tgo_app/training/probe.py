"""Linear probes per (checkpoint, layer), trained through ``tgo_store.ActivationLoader``.

A store is a training set: for every checkpoint and layer a softmax-linear probe learns the
sample's label from one token's activation (default the CLS token) on a seeded split of the
samples, and is scored on the held-out ones. The baseline that could refute a high score is
the same probe trained on labels permuted across samples (seeded): it sees the same vectors
but no pairing of vector and label, so it must stay near chance; chance itself is the share
of the most common held-out label.

    python -m tgo_app.training.probe STORE --out probe.png [--tokens 0] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from tgo_store.errors import TgoError

ACCURACY, NULL = "probe_accuracy", "probe_accuracy_permuted_labels"


@dataclass(frozen=True)
class ProbeConfig:
    tokens: tuple[int, ...] = (0,)
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-2
    weight_decay: float = 1e-4
    held_out: float = 0.3
    seed: int = 0


def split_samples(n: int, held_out: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, held-out) sample indices."""
    order = np.random.default_rng(seed).permutation(n)
    k = max(1, round(n * held_out))
    return np.sort(order[k:]), np.sort(order[:k])


def _label_lookup(ds: xr.Dataset, permute_seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(sorted sample ids, their labels), the labels permuted across samples when a seed is given."""
    ids, labels = ds["sample"].values.astype(np.int64), ds["label"].values.astype(np.int64)
    if permute_seed is not None:
        labels = labels[np.random.default_rng(permute_seed).permutation(len(labels))]
    order = np.argsort(ids)
    return ids[order], labels[order]


def _labels(batch: dict, lookup: tuple[np.ndarray, np.ndarray]) -> Any:
    import torch

    ids, labels = lookup
    return torch.from_numpy(labels[np.searchsorted(ids, batch["sample"].numpy())])


def train_probe(store: str, layer: int, checkpoint: int, train: np.ndarray, test: np.ndarray, n_classes: int,
                cfg: ProbeConfig, lookup: tuple[np.ndarray, np.ndarray]) -> float:
    """Held-out accuracy of a linear probe trained for ``cfg.epochs`` epochs through the loader."""
    import torch

    from tgo_store import ActivationLoader

    loader = ActivationLoader(store, layer, checkpoint, tokens=list(cfg.tokens), batch_size=cfg.batch_size,
                              seed=cfg.seed, samples=train)
    mean, scale = loader.mean, max(loader.scale, 1e-12)  # train statistics normalise both splits
    torch.manual_seed(cfg.seed)
    probe = torch.nn.Linear(loader.n_features, n_classes)
    opt = torch.optim.AdamW(probe.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for epoch in range(cfg.epochs):
        loader.set_epoch(epoch)
        for batch in loader:
            loss = torch.nn.functional.cross_entropy(probe((batch["activations"] - mean) / scale),
                                                     _labels(batch, lookup))
            opt.zero_grad()
            loss.backward()
            opt.step()
    held = ActivationLoader(store, layer, checkpoint, tokens=list(cfg.tokens), batch_size=4096, shuffle=False,
                            samples=test)
    right = total = 0
    with torch.no_grad():
        for batch in held:
            pred = probe((batch["activations"] - mean) / scale).argmax(1)
            right += int((pred == _labels(batch, lookup)).sum())
            total += len(pred)
    return right / total


def probe_accuracy(store: str, cfg: ProbeConfig = ProbeConfig(), *, checkpoints: Sequence[int] | None = None,
                   layers: Sequence[int] | None = None, progress: bool = True) -> xr.Dataset:
    """(checkpoint, layer) held-out probe accuracy, with the permuted-label baseline and chance."""
    from tgo_store.store.open import open_store

    ds = open_store(store, chunks=None)
    if "label" not in ds.coords or (ds["label"].values < 0).all():
        raise TgoError(f"store {store} has no sample labels to probe; ingest a labelled dataset (e.g. sklearn:digits)")
    n_classes = int(ds["label"].values.max()) + 1
    train, test = split_samples(ds.sizes["sample"], cfg.held_out, cfg.seed)
    real, permuted = _label_lookup(ds, None), _label_lookup(ds, cfg.seed + 1)
    ckpts = list(range(ds.sizes["checkpoint"])) if checkpoints is None else list(checkpoints)
    layer_values = ds["layer"].values.tolist() if layers is None else list(layers)
    acc = np.full((len(ckpts), len(layer_values)), np.nan)
    null = np.full_like(acc, np.nan)
    start = time.perf_counter()
    for i, c in enumerate(ckpts):
        for j, layer in enumerate(layer_values):
            acc[i, j] = train_probe(store, layer, c, train, test, n_classes, cfg, real)
            null[i, j] = train_probe(store, layer, c, train, test, n_classes, cfg, permuted)
            if progress:
                done = i * len(layer_values) + j + 1
                rate = done / (time.perf_counter() - start)
                print(f"probe {done}/{acc.size}: checkpoint {c} layer {layer} accuracy {acc[i, j]:.3f} "
                      f"(permuted labels {null[i, j]:.3f}); {rate:.2f} probes/s, "
                      f"ETA {(acc.size - done) / rate:.0f} s", flush=True)
    held_labels = ds["label"].values[test]
    chance = float(np.bincount(held_labels).max() / len(held_labels))
    steps = ds["checkpoint"].values[ckpts]
    dims = ("checkpoint", "layer")
    return xr.Dataset({ACCURACY: (dims, acc), NULL: (dims, null)},
                      coords={"checkpoint": steps, "layer": layer_values},
                      attrs={"chance": chance, "store": str(store), "n_train": len(train), "n_held_out": len(test),
                             "probe": "softmax-linear on (x - mean) / scale of the train samples, AdamW, cross-entropy",
                             **{f"probe_{k}": list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}})


def probe_figure(res: xr.Dataset) -> Any:
    """Held-out probe accuracy against layer, one line per checkpoint, with both baselines."""
    from tgo_analysis.report.figures import _legend_right, _lines_per_checkpoint, plt

    fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    _lines_per_checkpoint(ax, res, res[ACCURACY], "held-out probe accuracy")
    ax.plot(res["layer"].values, res[NULL].mean("checkpoint").values, "k--", lw=1,
            label="permuted labels (mean over steps)")
    ax.axhline(res.attrs["chance"], color="grey", lw=1, ls=":", label="chance (majority label)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"linear probe on token {res.attrs.get('probe_tokens')} through ActivationLoader: "
                 f"{res.attrs['n_train']} train / {res.attrs['n_held_out']} held-out samples", fontsize=8, loc="left")
    _legend_right(fig, ax, "checkpoint")
    return fig


def main(argv: Sequence[str] | None = None) -> xr.Dataset:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--out", default="probe.png", help="figure path (the numbers go next to it as .json)")
    parser.add_argument("--tokens", default="0", help="comma-separated token indices (default 0: CLS)")
    parser.add_argument("--epochs", type=int, default=ProbeConfig.epochs)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = ProbeConfig(tokens=tuple(int(t) for t in args.tokens.split(",")), epochs=args.epochs, seed=args.seed)
    res = probe_accuracy(args.store, cfg)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    probe_figure(res).savefig(out, dpi=110)
    numbers = {"checkpoint": res["checkpoint"].values.tolist(), "layer": res["layer"].values.tolist(),
               ACCURACY: res[ACCURACY].values.tolist(), NULL: res[NULL].values.tolist(), "attrs": res.attrs}
    out.with_suffix(".json").write_text(json.dumps(numbers, indent=1))
    print(res[ACCURACY].to_pandas().round(3).to_string())
    print(f"written: {out}")
    return res


if __name__ == "__main__":
    main()
