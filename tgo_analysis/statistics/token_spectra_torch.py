"""The per-token spectra's torch kernels, which the engine's device backend runs (``--device cuda``).

Each block is copied to the device, cast to float64, centred, multiplied and merged with the
same Chan-Golub-LeVeque update as ``tgo_analysis.kernels.moments`` (``merge_moments`` works on
torch tensors too); the batched ``eigvalsh`` runs on the device and only eigenvalues come back.
float64 keeps the results equal to the CPU path's to 1e-9. torch is imported inside the kernels:
the statistic declares them, the backend (``engine.device``) calls them with its torch device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tgo_analysis.kernels.moments import Moments, merge_moments, per_token


def fold_moments(device: Any, acc: Moments | None, x: np.ndarray, valid: np.ndarray | None = None) -> Moments:
    """``acc`` merged with the per-token moments of ``x`` (n, T, D): float64 tensors on ``device``.

    With ``valid`` (n, T) token t counts only its valid samples (per-token count tensor),
    as ``moments.fold_masked_moments`` does on the CPU; padding is zeroed before any product.
    """
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x)).to(device, non_blocking=True)
    t = t.to(torch.float64).transpose(0, 1)  # (T, n, D)
    if valid is None and (acc is None or not per_token(acc.count)):
        mean = t.mean(dim=1)
        centred = t - mean.unsqueeze(1)
        part = Moments(int(t.shape[1]), mean, centred.transpose(1, 2) @ centred)
    else:
        keep = np.ones(x.shape[:2], bool) if valid is None else np.asarray(valid, bool)
        m = torch.from_numpy(np.ascontiguousarray(keep.T)).to(t.device)  # (T, n)
        count = m.sum(dim=1).to(torch.float64)  # float64: torch divides int tensors in float32
        t = torch.where(m.unsqueeze(-1), t, torch.zeros((), dtype=t.dtype, device=t.device))
        mean = t.sum(dim=1) / count.clamp_min(1).unsqueeze(-1)
        centred = (t - mean.unsqueeze(1)) * m.unsqueeze(-1)
        part = Moments(count, mean, centred.transpose(1, 2) @ centred)
    return part if acc is None else merge_moments(acc, part)


def covariance_eigenvalues(device: Any, m: Moments) -> np.ndarray:
    """(T, D) eigenvalues of each token's covariance, descending, negatives clipped to 0."""
    import torch

    scale = (m.count - 1).clamp_min(1)[:, None, None] if per_token(m.count) else m.count - 1
    cov = m.comoment / scale
    return torch.linalg.eigvalsh(cov).flip(-1).clamp_min(0).cpu().numpy()
