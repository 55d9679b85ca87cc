"""Per-token covariance spectra of one (checkpoint, layer) on a torch device (CUDA).

The CPU path turns each sample block into a Moments task and merges them in a Dask tree; on a
GPU that would ship a (T, D, D) co-moment back to the host per block. Here one Dask task
streams the layer's sample blocks through the device instead: each block is read (the next one
is prefetched on a thread while the device works), centred and multiplied in float64 on the
device, merged with the same Chan-Golub-LeVeque update as ``tgo_analysis.moments``, and the
batched ``eigvalsh`` runs there too; only eigenvalues and traces come back. float64 keeps the
results equal to the CPU path's to 1e-9 (H100 float64 tensor cores: ~50 TFLOP/s).

Tokens are processed in groups whose co-moments fit ``memory_bytes`` of device memory; each
group re-reads the blocks (a 785-token ViT-B layer needs 3.7 GB, one group on any data-centre
GPU). torch is imported lazily; without CUDA the same code runs on torch's CPU device, which
is how the tests check it.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.moments import Moments, covariance, merge_moments
from tgo_analysis.reductions.blocks import LazySlab, prefetched
from tgo_store.errors import TgoError

DEVICE_MEMORY_BYTES = 8 << 30
_LOCKS: dict[str, threading.Lock] = {}


def check_device(device: str) -> str:
    """'cpu' (numpy path), 'cuda' or 'cuda:N'; TgoError when CUDA is asked for and absent.

    'torch:cpu' runs this module's device path on torch's CPU device (how tests check it).
    """
    if device in ("cpu", "torch:cpu"):
        return device
    if not device.startswith("cuda"):
        raise TgoError(f"unknown --device {device}; use cpu, cuda or cuda:N")
    import torch

    if not torch.cuda.is_available():
        raise TgoError(f"--device {device} asked for, but torch sees no CUDA device here; use --device cpu")
    return device


def _group_moments(slab: Any, lo: int, hi: int, device: Any) -> Moments:
    """Moments of tokens [lo, hi), float64 tensors on the device (the merge is the CPU path's)."""
    import torch

    running = Moments(0, None, None)
    for block in prefetched(slab):
        x = torch.from_numpy(np.ascontiguousarray(block[:, lo:hi])).to(device, non_blocking=True)
        x = x.to(torch.float64).transpose(0, 1)  # (T, n, D)
        mean_b = x.mean(dim=1)
        centred = x - mean_b.unsqueeze(1)
        running = merge_moments(running, Moments(int(x.shape[1]), mean_b, centred.transpose(1, 2) @ centred))
    return running


def layer_spectra(lazy: LazySlab, device: str, memory_bytes: int = DEVICE_MEMORY_BYTES) -> dict[str, np.ndarray]:
    """Eigenvalues (T, D) descending, clipped at 0, and traces (T,) of every token's covariance."""
    import torch

    slab = lazy.array
    _, n_tokens, n_features = slab.shape
    dev = torch.device("cpu" if device == "torch:cpu" else device)
    group = max(1, min(n_tokens, memory_bytes // (3 * n_features * n_features * 8)))
    eigs, traces = [], []
    with _LOCKS.setdefault(str(dev), threading.Lock()):  # one layer at a time per device
        for lo in range(0, n_tokens, group):
            hi = min(n_tokens, lo + group)
            cov = covariance(_group_moments(slab, lo, hi, dev))
            eigs.append(torch.linalg.eigvalsh(cov).flip(-1).clamp_min(0).cpu().numpy())
            traces.append(torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1).cpu().numpy())
            del cov
    return {N.EIGENVALUES: np.concatenate(eigs), "trace": np.concatenate(traces)}
