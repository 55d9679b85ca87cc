"""Tiny models for capture tests (the factory lives in tests.support so other areas reuse it)."""

from __future__ import annotations

import pytest
import torch

from tests.support import tiny_vit as make_tiny_vit


@pytest.fixture
def tiny_vit():
    """A 2-block timm ViT on 16x16 grey images (17 tokens, 16 features), fixed weights."""
    torch.manual_seed(0)
    return make_tiny_vit().eval()
