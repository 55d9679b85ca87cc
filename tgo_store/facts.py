"""The facts capture hands the store: which checkpoints (``CheckpointRef``) and which loss (``LossSpec``).

Plain values, no torch and no model: capture finds them (``capture.checkpoints`` hashes the
files, ``capture.losses`` chooses the loss), the store records them (``store.plan``,
``store.metadata``), and neither side imports the other for them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class CheckpointRef:
    """One checkpoint file: where it is, its training step and the hash of its bytes."""

    url: str
    step: int
    sha256: str
    builtin: bool = False  # the weights the model was built with (hf:PATH without --checkpoints): nothing to load


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
