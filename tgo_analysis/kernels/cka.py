"""Linear CKA and its representations, pure numpy, float64 (SPEC section 6).

Feature-space CKA (Kornblith et al. 2019) needs only the centred co-moments XᵀX, YᵀY and XᵀY:
with the co-moment C of the concatenated vectors [x₁, …, x_L] (merged over sample blocks with
Chan's update, ``kernels.moments``), the CKA of sides a and b is ‖C_ab‖²_F / (‖C_aa‖_F ‖C_bb‖_F),
exact for any N. The ``all`` representation (every token concatenated, T·D features) goes through
N × N Gram matrices instead: ⟨HKH, HLH⟩ / (‖HKH‖ ‖HLH‖), the same number for the same vectors.
"""

from __future__ import annotations

import numpy as np

from tgo_store.errors import TgoError

MEAN, CLS, ALL, TOKEN_PREFIX = "mean", "cls", "all", "token:"


def parse_representations(text: str) -> tuple[str, ...]:
    """'mean,cls,token:3,all' -> names, checked (``token:K`` needs an integer K >= 0)."""
    names = tuple(dict.fromkeys(s.strip() for s in str(text).split(",") if s.strip()))
    for name in names:
        if name in (MEAN, CLS, ALL):
            continue
        k = name[len(TOKEN_PREFIX):] if name.startswith(TOKEN_PREFIX) else ""
        if not k.isdigit():
            raise TgoError(f"unknown representation '{name}'; use mean, cls, token:K (K a token index) or all")
    if not names:
        raise TgoError("no representation chosen; give --representations mean,cls,token:K,all (any of them)")
    return names


def token_of(name: str) -> int | None:
    """The token index a representation reads (cls = 0, token:K = K); None for mean and all."""
    if name == CLS:
        return 0
    if name.startswith(TOKEN_PREFIX):
        return int(name[len(TOKEN_PREFIX):])
    return None


def valid_mask(shape: tuple[int, int], mask: np.ndarray | None) -> np.ndarray:
    return np.ones(shape, bool) if mask is None else np.asarray(mask, bool)


def sample_keep(name: str, valid: np.ndarray) -> np.ndarray:
    """Which samples have a vector for ``name``: a valid token K, or at least one valid token (mean)."""
    k = token_of(name)
    return valid[:, k] if k is not None else valid.any(axis=1)


def representation(x: np.ndarray, name: str, valid: np.ndarray) -> np.ndarray:
    """The (kept samples, D) float64 vectors of ``name`` for a block x (n, T, D).

    ``mean`` averages a sample's valid tokens only; ``cls``/``token:K`` take token K of the
    samples where it is valid. The same samples are kept on every slab of one store (the mask is
    a store coordinate), so two sides of a CKA always pair the same inputs.
    """
    keep = sample_keep(name, valid)
    k = token_of(name)
    if k is not None:
        return np.asarray(x[keep, k], dtype=np.float64)
    if valid.all():  # buffered float64 reduction, no float64 copy of the block
        return np.asarray(x, dtype=x.dtype).mean(axis=1, dtype=np.float64)
    v = valid[keep]
    sums = np.where(v[..., None], x[keep], np.zeros((), x.dtype)).sum(axis=1, dtype=np.float64)
    return sums / v.sum(axis=1)[:, None]


def masked_rows(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """x with padded positions set to zero (store dtype): the ``all`` vector of a padded sample."""
    return x if valid.all() else np.where(valid[..., None], x, np.zeros((), x.dtype))


def cka_of_blocks(c_ab: np.ndarray, norm_a: float, norm_b: float) -> float:
    """‖C_ab‖²_F / (‖C_aa‖_F ‖C_bb‖_F); NaN when a side has no variance."""
    denominator = norm_a * norm_b
    return float(np.vdot(c_ab, c_ab).real / denominator) if denominator > 0 else float("nan")


def block_cka(comoment: np.ndarray, width: int) -> np.ndarray:
    """CKA of every pair of ``width``-feature sides of one concatenated co-moment (k·width square)."""
    k = comoment.shape[0] // width

    def part(a: int, b: int) -> np.ndarray:
        return comoment[a * width:(a + 1) * width, b * width:(b + 1) * width]

    norms = [float(np.linalg.norm(part(a, a))) for a in range(k)]
    out = np.empty((k, k))
    for a in range(k):
        for b in range(a, k):
            out[a, b] = out[b, a] = cka_of_blocks(part(a, b), norms[a], norms[b])
    return out


def centre_gram(gram: np.ndarray) -> np.ndarray:
    """H K H with H = I - 11ᵀ/N (a new array)."""
    row = gram.mean(axis=0)
    return gram - row[None, :] - row[:, None] + row.mean()


def gram_cka(kx: np.ndarray, ky: np.ndarray) -> float:
    """⟨K_X, K_Y⟩ / (‖K_X‖ ‖K_Y‖) of two centred Gram matrices."""
    denominator = float(np.linalg.norm(kx) * np.linalg.norm(ky))
    return float(np.vdot(kx, ky) / denominator) if denominator > 0 else float("nan")


def pca_basis(covariance: np.ndarray, rank: int) -> np.ndarray:
    """The top-``rank`` eigenvectors (D, rank) of a symmetric matrix, largest first."""
    _, vectors = np.linalg.eigh(covariance)
    return vectors[:, ::-1][:, :rank]


def subspace_energy(second_moment: np.ndarray, basis: np.ndarray) -> float:
    """tr(Qᵀ U Q) / tr(U): the share of Σ‖u‖² inside span(Q) (Q orthonormal); NaN when U = 0."""
    total = float(np.trace(second_moment))
    return float(np.trace(basis.T @ second_moment @ basis) / total) if total > 0 else float("nan")
