"""The demo's causal-LM decoder: a 4-block LLaMA (128 features) trained from scratch (CPU friendly, offline).

It learns next-token prediction on packed 64-token sequences of the bundled corpus with the
loop, tokenizer and batches of ``training.language``; the held-out causal-LM loss at every saved
step must fall visibly for the demo to mean anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tgo_app.training.language import (
    HELD_OUT_ROWS,
    OnCheckpoint,
    TextTrainingLog,
    evaluated,
    packed_sequences,
    train_language_model,
    train_tokenizer,
)

DECODER_CONFIG = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}


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
    on_checkpoint: OnCheckpoint | None = None,
) -> TextTrainingLog:
    """Train the demo decoder on ``documents``; save ``checkpoint-<step>/`` at every step in ``steps``
    (and the tokenizer in ``directory/tokenizer``, which the encoder reuses).

    ``on_checkpoint(step, model, tokenizer)`` runs right after each save (the demo records
    activations and gradients there, live); it must leave the weights as they are.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(documents, directory / "tokenizer")
    train_rows, held_rows = packed_sequences(tokenizer, documents, seq_len, HELD_OUT_ROWS, seed)
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         **DECODER_CONFIG)
    model = LlamaForCausalLM(config)
    return train_language_model(
        model, tokenizer, train_rows, directory, steps, batch_loss=causal_loss,
        held_out=lambda m: held_out_loss(m, held_rows), batch_size=batch_size, lr=lr, seed=seed,
        progress=progress, on_checkpoint=on_checkpoint)


def causal_loss(model: Any, batch: Any) -> Any:
    """Mean next-token cross-entropy of a packed batch."""
    return model(input_ids=batch, labels=batch).loss


def held_out_loss(model: Any, rows: Any) -> float:
    """Mean causal-LM loss on the held-out rows, in eval mode; the train/eval state is restored."""
    return evaluated(model, lambda: causal_loss(model, rows))
