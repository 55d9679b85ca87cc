"""In-flight co-moments: per-(layer, token) count, mean and centred co-moment accumulated on the
model's device during the forward pass, with no activations written.

Each batch's activations are centred on their batch mean and multiplied with one batched GEMM
per (layer, token); batches are merged with the same Chan-Golub-LeVeque update as
``tgo_analysis.kernels.moments``. On CUDA the batch GEMM runs in float32 (tensor-core speed; the data
are centred first, so no raw sums) and the running state is float64; on the CPU everything is
float64. ``result()`` returns a ``Moments`` with batch dims (layer, token), so spectra and
metrics apply unchanged. torch is imported lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tgo_analysis.kernels.moments import Moments, merge_moments


class InflightMoments:
    """Accumulate co-moments of every captured (layer, token) while batches stream through."""

    def __init__(self, model: Any, *, layers: Sequence[int] | None = None, tokens: Sequence[int] | None = None,
                 hook_modules: Sequence[str] | None = None, example: Any = None):
        import torch

        from tgo_store.capturers import make_capturer

        self.capturer = make_capturer(model, layers=layers, tokens=tokens, hook_modules=hook_modules, example=example)
        self.device = next(model.parameters()).device
        self.gemm_dtype = torch.float32 if self.device.type == "cuda" else torch.float64
        self.state = Moments(0, None, None)  # torch tensors on the model's device

    def update(self, inputs: Any) -> None:
        """Capture one batch and fold its moments into the running state."""
        import torch

        acts = self.capturer(inputs.to(self.device))  # (L, B, T, D)
        x = acts.to(self.gemm_dtype).permute(0, 2, 1, 3)  # (L, T, B, D)
        mean_b = x.mean(dim=2)
        centred = x - mean_b.unsqueeze(2)
        co_b = torch.matmul(centred.transpose(-1, -2), centred).to(torch.float64)
        self.state = merge_moments(self.state, Moments(int(x.shape[2]), mean_b.to(torch.float64), co_b))

    def result(self) -> Moments:
        """The accumulated state as numpy float64 ``Moments`` with batch dims (layer, token)."""
        if self.state.count == 0:
            raise ValueError("no batch was seen: call update() first")
        return Moments(self.state.count, self.state.mean.cpu().numpy(), self.state.comoment.cpu().numpy())
