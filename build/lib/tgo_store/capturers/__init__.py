"""Capturers: model adapters that turn a batch into per-layer activations, found by registry."""

from tgo_store.capturers.base import Capturer, CapturerEntry, TokenLayout, stack_parts
from tgo_store.capturers.registry import CAPTURERS, make_capturer

__all__ = ["CAPTURERS", "Capturer", "CapturerEntry", "TokenLayout", "make_capturer", "stack_parts"]
