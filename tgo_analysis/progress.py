"""The analysis progress bar: a re-export of tgo's one progress set-up (``tgo_store.progress``)."""

from __future__ import annotations

from tgo_store.progress import UnitProgress

__all__ = ["UnitProgress"]
