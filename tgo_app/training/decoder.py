"""A small, seeded causal-LM training run for the language demo (CPU friendly, offline).

A byte-level BPE tokenizer (2,048 ids) is trained on the bundled corpus, then a 4-block
LLaMA decoder (128 features) learns next-token prediction on packed 64-token sequences.
Checkpoints are written the way ``transformers.Trainer`` writes them, ``checkpoint-<step>/``
folders with config, safetensors weights and the tokenizer, so ``tgo ingest --model hf:...
--checkpoints 'DIR/checkpoint-*'`` reads them like any public checkpoint series. A held-out
split (seeded) gives the loss at every saved step; it must fall visibly for the demo to mean
anything.
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

DECODER_CONFIG = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}


@dataclass
class TextTrainingLog:
    """Held-out loss at each saved step, and the wall time of the run."""

    steps: list[int] = field(default_factory=list)
    held_out_loss: list[float] = field(default_factory=list)  # causal LM, nats per token
    loss: list[float] = field(default_factory=list)  # the last training batch, like the image demo's
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"steps": self.steps, "held_out_loss": self.held_out_loss, "loss": self.loss,
                "seconds": self.seconds}


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


def train_decoder(
    documents: Sequence[str],
    directory: Path,
    steps: Sequence[int],
    *,
    seq_len: int = 64,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = True,
    on_checkpoint: Callable[[int, Any, Any], None] | None = None,
) -> TextTrainingLog:
    """Train the demo decoder on ``documents``; save ``checkpoint-<step>/`` at every step in ``steps``.

    ``on_checkpoint(step, model, tokenizer)`` runs right after each save (the demo records
    activations and gradients there, live); it must leave the weights as they are.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # the training bar says what runs

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(documents, directory / "tokenizer")
    train_rows, held_rows = packed_sequences(tokenizer, documents, seq_len, 128, seed)
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         **DECODER_CONFIG)
    model = LlamaForCausalLM(config)
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
                held = held_out_loss(model, held_rows)
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
            train_loss = optimiser_step(model(input_ids=batch, labels=batch).loss, optimiser, schedule)
            bar.set(step + 1)
    log.seconds = time.perf_counter() - started
    return log


def held_out_loss(model: Any, rows: Any) -> float:
    """Mean causal-LM loss on the held-out rows, in eval mode; the train/eval state is restored."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return float(model(input_ids=rows, labels=rows).loss)
    finally:
        model.train(was_training)
