"""The text demo's masked-LM encoder: BERT's corruption recipe, the unigram baseline its held-out loss is
read against, and a tokenizer that keeps every decoder id (so token frequencies line up across models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tgo_app.training import encoder as E


def test_corruption_follows_berts_recipe() -> None:
    rows = torch.randint(0, 100, (400, 256), generator=torch.Generator().manual_seed(1))
    inputs, labels = E.corrupt(rows, mask_id=100, vocab=100, generator=torch.Generator().manual_seed(2))
    chosen = labels >= 0
    assert abs(chosen.float().mean().item() - E.MASK_RATE) < 0.01
    assert torch.equal(labels[chosen], rows[chosen]) and torch.equal(inputs[~chosen], rows[~chosen])
    shown = inputs[chosen]
    as_mask = (shown == 100).float().mean().item()
    unchanged = (shown == rows[chosen]).float().mean().item()  # includes random draws that hit the same id
    assert abs(as_mask - E.SHOWN_AS_MASK) < 0.02
    assert abs(unchanged - (1 - E.SHOWN_AS_MASK - E.SHOWN_AS_RANDOM) - E.SHOWN_AS_RANDOM / 100) < 0.02
    assert int(inputs.max()) <= 100  # random ids never beyond the vocabulary


def test_unigram_cross_entropy_is_the_smoothed_frequency_code_length() -> None:
    rng = np.random.default_rng(0)
    train = torch.as_tensor(rng.integers(0, 7, size=(50, 8)))
    labels = torch.full((4, 8), -100)
    labels[:, ::3] = torch.as_tensor(rng.integers(0, 7, size=(4, 3)))
    counts = np.bincount(train.numpy().ravel(), minlength=9) + 1.0  # vocab 9: two ids never seen
    p = counts / counts.sum()
    targets = labels.numpy()[labels.numpy() >= 0]
    assert abs(E.unigram_cross_entropy(train, labels, 9) - (-np.log(p[targets]).mean())) < 1e-12


def test_encoder_tokenizer_keeps_the_decoder_ids_and_appends_the_mask(tmp_path) -> None:
    from tgo_app.training.language import train_tokenizer

    documents = ["the quick brown fox jumps over the lazy dog " * 20, "print(hello world) # a comment " * 20]
    decoder = train_tokenizer(documents, tmp_path / "decoder")
    encoder = E.encoder_tokenizer(documents, tmp_path / "encoder", tmp_path / "decoder")
    assert encoder.mask_token == E.MASK_TOKEN and encoder.mask_token_id == len(decoder)
    assert encoder(documents)["input_ids"] == decoder(documents)["input_ids"]
    again = E.encoder_tokenizer(documents, tmp_path / "again")  # no decoder folder: trained again, same ids
    assert again(documents)["input_ids"] == decoder(documents)["input_ids"]


@pytest.mark.slow
def test_the_full_demo_encoder_falls_well_below_the_unigram_cross_entropy(tmp_path) -> None:
    """The full `tgo demo --text` encoder run (its corpus, rows, batches, schedule and 300 steps; only the
    intermediate checkpoints left out): its held-out masked-LM loss must leave the unigram plateau."""
    from tgo_app.demos.text import TextDemoConfig
    from tgo_store.sources.text import PYDOC, read_documents

    cfg = TextDemoConfig()
    log = E.train_encoder(read_documents(PYDOC), tmp_path, [0, cfg.train_steps], seq_len=cfg.seq_len,
                          batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, progress=False)
    unigram = log.baselines[E.UNIGRAM_LOSS]
    assert log.held_out_loss[0] > unigram  # at initialisation: worse than counting tokens
    assert log.held_out_loss[-1] < unigram - 0.25, (log.held_out_loss, unigram)
