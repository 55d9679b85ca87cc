"""Tiny timm ViT checkpoints and a helper to ingest them (seconds on a CPU)."""

from __future__ import annotations

import pytest

from tests.support import save_checkpoints


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> list[str]:
    return save_checkpoints(tmp_path_factory.mktemp("ckpt"), [0, 50, 200])
