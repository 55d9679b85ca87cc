"""Tiny stores for the loader: a text-like store (padding, special tokens, token ids) written by
plain xarray, a tgo-ingested image store (labels, three checkpoints, six sample blocks), and a
tgo-ingested text store of a tiny LLaMA (packed: every position valid; the saelens export)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import ingest_kwargs, save_checkpoints
from tests.text_analysis.support import write_text_store


@pytest.fixture(scope="session")
def text_store(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("loader-text") / "text.zarr")
    write_text_store(path)
    return path


@pytest.fixture(scope="session")
def image_store(tmp_path_factory) -> str:
    from tgo_store import ingest

    root = tmp_path_factory.mktemp("loader-image")
    ckpts = save_checkpoints(root / "ckpt", [0, 50, 200])
    path = str(Path(root) / "image.zarr")
    ingest(path, **ingest_kwargs(ckpts))
    return path


@pytest.fixture(scope="session")
def llama_store(tmp_path_factory) -> str:
    """A tgo-ingested text store of a tiny LLaMA on packed pydoc text: every position valid, token ids,
    `label` all -1, layer names `model.embed_tokens`, `model.layers.0`, `model.norm after model.layers.1`."""
    from tests.text.tiny_hf import bpe_tokenizer, build, save
    from tgo_store import ingest

    root = tmp_path_factory.mktemp("loader-llama")
    tokenizer = bpe_tokenizer()
    model = save(build("llama", len(tokenizer)), tokenizer, root / "llama")
    path = str(root / "llama.zarr")
    ingest(path, model_spec=f"hf:{model}", checkpoints=None, data_spec="text:pydoc",
           data_options={"seq_len": 24, "samples": 40}, batch_size=8, samples_per_block=16, device="cpu",
           progress=False, dtype="float32")
    return path
