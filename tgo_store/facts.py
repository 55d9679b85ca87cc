"""The facts capture hands the store: which checkpoints (``CheckpointRef``) and which loss (``LossSpec``).

Plain values, no torch and no model: capture finds them (``capture.checkpoints`` hashes the
files, ``capture.losses`` chooses the loss), the store records them (``store.plan``,
``store.metadata``), and neither side imports the other for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from tgo_store.errors import TgoError


@dataclass(frozen=True)
class CheckpointRef:
    """One checkpoint file: where it is, its training step and the hash of its bytes."""

    url: str
    step: int
    sha256: str
    builtin: bool = False  # the weights the model was built with (hf:PATH without --checkpoints): nothing to load


def refuse_duplicates(refs: Sequence[CheckpointRef], stored: Sequence[tuple[int, str, str]] = ()) -> None:
    """Two checkpoints with the same weights hash are one checkpoint under two names: refuse.

    ``stored`` are the store's (step, path, sha256): a new checkpoint with the weights of one
    already stored under another path is refused too (public series publish identical weights
    under several step names, and a silent duplicate skews every curve over training).
    """
    seen: dict[str, CheckpointRef] = {}
    for ref in refs:
        first = seen.setdefault(ref.sha256, ref)
        if first is not ref:
            raise TgoError(f"checkpoints {first.url} (step {first.step}) and {ref.url} (step {ref.step}) hold identical "
                           f"weights (sha256 {ref.sha256[:12]}); drop one of them from --checkpoints, or pass "
                           "--allow-duplicate-weights to record both")
    by_sha: dict[str, list[tuple[int, str]]] = {}
    for step, path, sha in stored:
        by_sha.setdefault(sha, []).append((step, path))
    for ref in refs:
        same = by_sha.get(ref.sha256, [])
        if same and ref.url not in {path for _, path in same}:
            step, path = same[0]
            raise TgoError(f"checkpoint {ref.url} (step {ref.step}) holds the weights of {path} (step {step}), already "
                           f"in the store (sha256 {ref.sha256[:12]}); drop it from --checkpoints, or pass "
                           "--allow-duplicate-weights to record it")


CLASSIFICATION, CAUSAL_LM, MASKED_LM = "classification", "causal_lm", "masked_lm"


@dataclass(frozen=True)
class LossSpec:
    """What is differentiated; stored as the store's ``loss`` attribute and compared on append."""

    kind: str
    reduction: str = "sum"  # over samples and predicted positions
    scale: float = 1.0
    mask_rate: float | None = None  # masked_lm only
    seed: int | None = None  # masked_lm only: positions drawn per (seed, sample id)

    def attr(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out["description"] = DESCRIPTIONS[self.kind]
        return out


DESCRIPTIONS = {
    CLASSIFICATION: "cross-entropy of the model's logits against the sample labels, summed over samples",
    CAUSAL_LM: "next-token cross-entropy at every valid position whose successor is valid, summed",
    MASKED_LM: "cross-entropy at seeded masked positions (valid, non-special; input replaced by the mask "
               "token), summed; activations and gradients are both of the masked input",
}
