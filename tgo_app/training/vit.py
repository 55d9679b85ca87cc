"""A small, seeded training loop for the demo: a timm ViT on scikit-learn's digits (CPU friendly).

Checkpoints are saved at the requested steps (step 0 = initialisation) as
``step_XXXXXX.pth`` holding {"model": state_dict, "step": n, "accuracy": held-out accuracy};
``write_training_log`` is the one writer of ``training.json`` beside them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tgo_store.progress import progress_bar

TRAINING_LOG = "training.json"


@dataclass
class TrainingLog:
    steps: list[int]
    accuracy: list[float]
    loss: list[float]
    seconds: float

    def to_json(self) -> dict:
        return {"steps": self.steps, "accuracy": self.accuracy, "loss": self.loss, "seconds": self.seconds}


def log_spaced_steps(total: int, count: int) -> list[int]:
    """0 plus `count - 1` roughly log-spaced steps ending at `total`."""
    import numpy as np

    steps = np.unique(np.round(np.geomspace(1, total, count - 1)).astype(int))
    return [0, *[int(s) for s in steps]]


def read_training_log(directory: Path) -> dict | None:
    """The training log saved beside the checkpoints, or None."""
    path = directory / TRAINING_LOG
    return json.loads(path.read_text()) if path.exists() else None


def write_training_log(directory: Path, log: dict, config: Any) -> None:
    """Save the training log and the run's config (a dataclass, what ``finished_training`` checks)."""
    from dataclasses import asdict

    log["config"] = json.loads(json.dumps(asdict(config)))
    (directory / TRAINING_LOG).write_text(json.dumps(log, indent=1))


def finished_training(directory: Path, config: Any, steps: list[int], saved: list[Path]) -> dict | None:
    """The log of this config's run when every checkpoint is saved (resume = skip training); None
    to train; a one-line TgoError when the folder holds another configuration's checkpoints.

    ``config`` is the run's dataclass; a log written before configs were recorded is matched by its steps.
    """
    from dataclasses import asdict

    from tgo_store.errors import TgoError

    log = read_training_log(directory)
    if log is None:
        return None
    recorded = log.get("config")
    if recorded is not None:
        matches = recorded == json.loads(json.dumps(asdict(config)))
    else:
        matches = log.get("steps") == steps
    if not matches:
        raise TgoError(f"{directory} holds checkpoints of a different demo configuration "
                       f"(e.g. --quick vs full); use another --out or delete {directory.parent}")
    return log if all(path.exists() for path in saved) else None


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step_{step:06d}.pth"


def train(model: Any, train_source: Any, test_source: Any, steps: Sequence[int], directory: Path, *,
          batch_size: int = 64, lr: float = 1e-3, seed: int = 0, progress: bool = True) -> TrainingLog:
    """Train with AdamW on the train split; evaluate and save at each step in `steps`."""
    import numpy as np
    import torch

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    train_x = torch.from_numpy(next(train_source.batches(len(train_source))).inputs)
    train_y = torch.from_numpy(train_source.labels)
    test_batch = next(test_source.batches(len(test_source)))
    test_x, test_y = torch.from_numpy(test_batch.inputs), torch.from_numpy(test_batch.labels)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=max(steps) + 1, pct_start=0.1)
    rng = np.random.default_rng(seed)
    log = TrainingLog([], [], [], 0.0)
    started = time.perf_counter()
    with progress_bar("train", total=max(steps), enabled=progress) as bar:
        _loop(model, optimiser, schedule, rng, train_x, train_y, test_x, test_y, steps, directory, batch_size, log, bar)
    log.seconds = time.perf_counter() - started
    return log


def _loop(model: Any, optimiser: Any, schedule: Any, rng: Any, train_x: Any, train_y: Any, test_x: Any,
          test_y: Any, steps: Sequence[int], directory: Path, batch_size: int, log: TrainingLog, bar: Any) -> None:
    import torch

    save_at = set(steps)
    loss_value = float("nan")
    for step in range(max(steps) + 1):
        if step in save_at:
            accuracy = evaluate(model, test_x, test_y)
            torch.save({"model": model.state_dict(), "step": step, "accuracy": accuracy},
                       checkpoint_path(directory, step))
            log.steps.append(step)
            log.accuracy.append(accuracy)
            log.loss.append(loss_value)
            bar.set(step)
            bar.message(f"step {step}: held-out accuracy {accuracy:.3f}")
        if step == max(steps):
            break
        model.train()
        idx = torch.from_numpy(rng.choice(len(train_x), size=batch_size, replace=False))
        loss = torch.nn.functional.cross_entropy(model(train_x[idx]), train_y[idx])
        loss_value = optimiser_step(loss, optimiser, schedule)
        bar.set(step + 1)


def optimiser_step(loss: Any, optimiser: Any, schedule: Any) -> float:
    """One update from ``loss`` (zero, backward, step, schedule); the loss as a float."""
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    schedule.step()
    return float(loss.detach())


def evaluate(model: Any, x: Any, y: Any) -> float:
    import torch

    model.eval()
    with torch.inference_mode():
        return float((model(x).argmax(dim=1) == y).float().mean())
