"""Where an epoch stands: (epoch, batches taken) plus a fingerprint of what decides the order.

The stream is a pure function of the plan (``plan.EpochPlan``) and the epoch, so these two
numbers resume it exactly; the fingerprint refuses a state saved by a loader that would order
positions differently (another seed, batch size, window, layer or selection).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tgo_store.errors import TgoError

STATE_VERSION = 1


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):  # arrays by content hash: a selection over millions of samples stays short
        return f"{value.dtype}{value.shape}:" + hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
    return str(value)


def fingerprint(**facts: Any) -> str:
    """A short hash of JSON-able facts (sorted keys): equal facts, equal order."""
    text = json.dumps(facts, sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class LoaderState:
    epoch: int = 0
    batches: int = 0  # batches of this epoch already handed out
    fingerprint: str = ""
    version: int = STATE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], expected: str, n_batches: int) -> LoaderState:
        try:
            state = cls(int(data["epoch"]), int(data["batches"]), str(data["fingerprint"]),
                        int(data.get("version", STATE_VERSION)))
        except (KeyError, TypeError, ValueError) as exc:
            raise TgoError(f"not an ActivationLoader state ({type(exc).__name__}: {exc}); pass what "
                           "loader.state_dict() returned") from None
        if state.fingerprint != expected:
            raise TgoError("this state was saved by a loader with another store, layer, selection, seed, batch or "
                           "buffer size; build the loader with the same arguments as the one that saved it")
        if not 0 <= state.batches <= n_batches:
            raise TgoError(f"state says {state.batches} batches were taken, an epoch has {n_batches}; "
                           "pass what loader.state_dict() returned")
        return state
