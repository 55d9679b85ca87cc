"""What the demo's two language models share: the tokenizer, the packed corpus, the training loop.

A byte-level BPE tokenizer (2,048 ids) is trained on the bundled corpus and the documents are
packed into fixed-length rows, a seeded share of them held out. ``train_language_model`` runs
the loop both the causal-LM decoder and the masked-LM encoder use: the same batches (one seeded
sampler), AdamW with a one-cycle schedule, and ``checkpoint-<step>/`` folders written the way
``transformers.Trainer`` writes them (config, safetensors weights, tokenizer), each with the
held-out loss at that step. Only the loss differs between the two models.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tgo_app.training.vit import optimiser_step
from tgo_store.progress import progress_bar

TOKENIZER_VOCAB = 2048
END_OF_TEXT = "<|endoftext|>"
HELD_OUT_ROWS = 128

BatchLoss = Callable[[Any, Any], Any]  # (model, (B, S) token ids) -> scalar training loss
HeldOutLoss = Callable[[Any], float]  # model -> held-out loss in nats (the model's train/eval state restored)
OnCheckpoint = Callable[[int, Any, Any], None]  # (step, model, tokenizer), right after a save


@dataclass
class TextTrainingLog:
    """Held-out loss at each saved step, and the wall time of the run."""

    steps: list[int] = field(default_factory=list)
    held_out_loss: list[float] = field(default_factory=list)  # nats per predicted token
    loss: list[float] = field(default_factory=list)  # the last training batch, like the image demo's
    seconds: float = 0.0
    baselines: dict[str, float] = field(default_factory=dict)  # what the held-out loss is read against

    def to_json(self) -> dict:
        out: dict = {"steps": self.steps, "held_out_loss": self.held_out_loss, "loss": self.loss,
                     "seconds": self.seconds}
        return {**out, **self.baselines}


def checkpoint_dir(directory: Path, step: int) -> Path:
    """Where ``transformers.Trainer`` would put the checkpoint of ``step``."""
    return directory / f"checkpoint-{step}"


def train_tokenizer(documents: Sequence[str], directory: Path) -> Any:
    """Train a byte-level BPE on ``documents`` and save it as a fast tokenizer in ``directory``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB, special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    core.train_from_iterator(documents, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=END_OF_TEXT,
                                        eos_token=END_OF_TEXT, pad_token=END_OF_TEXT)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    return tokenizer


def packed_sequences(tokenizer: Any, documents: Sequence[str], seq_len: int, held_out: int,
                     seed: int) -> tuple[Any, Any]:
    """Documents joined by end-of-text, packed into (n, seq_len) rows; a seeded permutation
    puts ``held_out`` rows aside for the held-out loss."""
    import torch

    joined = [i for ids in tokenizer(list(documents))["input_ids"] for i in [*ids, tokenizer.eos_token_id]]
    ids = torch.as_tensor(joined, dtype=torch.long)
    rows = len(ids) // seq_len
    packed = ids[: rows * seq_len].view(rows, seq_len)
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(seed))
    return packed[order[held_out:]], packed[order[:held_out]]


def train_language_model(model: Any, tokenizer: Any, train_rows: Any, directory: Path, steps: Sequence[int], *,
                         batch_loss: BatchLoss, held_out: HeldOutLoss, batch_size: int, lr: float, seed: int,
                         progress: bool, on_checkpoint: OnCheckpoint | None = None) -> TextTrainingLog:
    """Train ``model`` on seeded batches of ``train_rows``; save ``checkpoint-<step>/`` at every step in ``steps``.

    The batch sampler is seeded with ``seed + 1`` whatever the loss, so the decoder and the encoder
    see the same rows in the same order (the same token budget). ``on_checkpoint`` must leave the
    weights as they are.
    """
    import torch
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # the training bar says what runs
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    last = max(steps)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=last + 1, pct_start=0.1)
    sampler = torch.Generator().manual_seed(seed + 1)
    log = TextTrainingLog()
    started = time.perf_counter()
    train_loss = float("nan")
    with progress_bar("train", total=last, enabled=progress) as bar:
        for step in range(last + 1):
            if step in steps:
                held = held_out(model)
                folder = checkpoint_dir(directory, step)
                model.save_pretrained(folder)
                tokenizer.save_pretrained(folder)
                log.steps.append(step)
                log.held_out_loss.append(held)
                log.loss.append(train_loss)
                bar.message(f"step {step}: held-out loss {held:.3f}")
                if on_checkpoint is not None:
                    on_checkpoint(step, model, tokenizer)
            if step == last:
                break
            model.train()
            batch = train_rows[torch.randint(len(train_rows), (batch_size,), generator=sampler)]
            train_loss = optimiser_step(batch_loss(model, batch), optimiser, schedule)
            bar.set(step + 1)
    log.seconds = time.perf_counter() - started
    return log


def evaluated(model: Any, loss: Callable[[], Any]) -> float:
    """``loss()`` in eval mode without autograd, as a float; the train/eval state is restored."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return float(loss())
    finally:
        model.train(was_training)
