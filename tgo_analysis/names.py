"""The names of SPEC section 2 (analysis results), in one place."""

from __future__ import annotations

CHECKPOINT, LAYER, TOKEN, TOKEN_OTHER, RANK = "checkpoint", "layer", "token", "token_other", "rank"

EIGENVALUES = "eigenvalues"
ALPHA = "alpha"
ALPHA_R2 = "alpha_r2"
EFFECTIVE_RANK = "effective_rank"
STABLE_RANK = "stable_rank"
PARTICIPATION_RATIO = "participation_ratio"
SPECTRAL_ENTROPY = "spectral_entropy"
SPECTRAL_FLATNESS = "spectral_flatness"
TOP1_SHARE = "top1_share"
COSINE_ANISOTROPY = "cosine_anisotropy"
TOKEN_CORRELATION = "token_correlation"
MEAN_TOKEN_CORRELATION = "mean_token_correlation"
INTRINSIC_DIMENSION = "intrinsic_dimension"
ALPHA_CLUSTER = "alpha_cluster"

ALL_TOKENS_SUFFIX = "_all"


def all_tokens(name: str) -> str:
    """The result name of a metric computed on all tokens concatenated (``alpha`` -> ``alpha_all``)."""
    return name + ALL_TOKENS_SUFFIX
