"""Tiny transformers models saved with save_pretrained, with locally built tokenizers (no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SEQ_MAX = 128


def bpe_tokenizer(vocab_size: int = 400) -> Any:
    """A byte-level BPE trained on Python's documentation topics, with BOS framing (LLaMA style)."""
    from pydoc_data.topics import topics

    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([topics[k] for k in sorted(topics)][:20], trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def minilm_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from tgo_store.capture.hf import locate_packaged

    return AutoTokenizer.from_pretrained(str(locate_packaged("minilm")), local_files_only=True)


def build(kind: str, vocab_size: int, seed: int = 0) -> Any:
    import torch
    import transformers as T

    torch.manual_seed(seed)
    if kind == "bert":
        cfg = T.BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=SEQ_MAX)
        return T.BertModel(cfg).eval()
    if kind == "llama":
        cfg = T.LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=SEQ_MAX,
                            bos_token_id=1, eos_token_id=2, pad_token_id=0)
        return T.LlamaForCausalLM(cfg).eval()
    cfg = T.GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=SEQ_MAX,
                       bos_token_id=1, eos_token_id=2)
    return T.GPT2LMHeadModel(cfg).eval()


def save(model: Any, tokenizer: Any, folder: Path, step: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if step is not None:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def perturb(model: Any, scale: float = 0.05) -> None:
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
