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
TOKEN_CORRELATION_CENTRED = "token_correlation_centred"  # SPEC 5: per-feature-centred variant
MEAN_TOKEN_CORRELATION_CENTRED = "mean_token_correlation_centred"
INTRINSIC_DIMENSION = "intrinsic_dimension"
ALPHA_CLUSTER = "alpha_cluster"
MEAN_NORM = "mean_norm"
ALL_TOKENS = "all_tokens"  # the selectable name of the all-tokens-concatenated metrics
METRIC_REASON = "metric_reason"

# SPEC section 8: every spectrum beside its storage noise floor and its finite-sample baseline
NOISE_FLOOR = "noise_floor"  # u² E‖x‖² / (3D), u the stored dtype's unit roundoff
RESOLVED_RANK = "resolved_rank"  # eigenvalues above 10 noise floors (and nonzero)
N_SAMPLES = "n_samples"  # the n of each unit (valid samples of a token, pooled points)
ISOTROPIC_SUFFIX = "_isotropic"
ISOTROPIC_METRICS = (ALPHA, EFFECTIVE_RANK, PARTICIPATION_RATIO, STABLE_RANK, TOP1_SHARE, SPECTRAL_FLATNESS)


def isotropic(name: str) -> str:
    """The finite-sample baseline of a metric (``alpha`` -> ``alpha_isotropic``, ``alpha_pooled`` ->
    ``alpha_pooled_isotropic``): its mean over seeded N(0, I_D) draws of the unit's n samples."""
    return name + ISOTROPIC_SUFFIX

ALL_TOKENS_SUFFIX = "_all"


def all_tokens(name: str) -> str:
    """The result name of a metric computed on all tokens concatenated (``alpha`` -> ``alpha_all``)."""
    return name + ALL_TOKENS_SUFFIX


# SPEC section 5: pooled positions (every valid (sample, token) vector of a layer as a point)
POOLED = "pooled"  # the metric group
POOLED_SUFFIX = "_pooled"
RANK_POOLED = "rank_pooled"


def pooled(name: str) -> str:
    """The result name of a metric on pooled positions (``top1_share`` -> ``top1_share_pooled``)."""
    return name + POOLED_SUFFIX


EIGENVALUES_POOLED = pooled(EIGENVALUES)
TOP1_SHARE_POOLED = pooled(TOP1_SHARE)
COSINE_ANISOTROPY_POOLED = pooled(COSINE_ANISOTROPY)
INTRINSIC_DIMENSION_POOLED = pooled(INTRINSIC_DIMENSION)

# SPEC section 5: token frequency buckets
FREQUENCY = "frequency"  # the metric group
FREQUENCY_BUCKET, FREQUENCY_LOW, FREQUENCY_HIGH = "frequency_bucket", "frequency_low", "frequency_high"
TOP1_SHARE_BY_FREQUENCY = "top1_share_by_frequency"
EFFECTIVE_RANK_BY_FREQUENCY = "effective_rank_by_frequency"
MEAN_NORM_BY_FREQUENCY = "mean_norm_by_frequency"
CENTROID_DISTANCE_BY_FREQUENCY = "centroid_distance_by_frequency"
FREQUENCY_CENTROID_SPEARMAN = "frequency_centroid_spearman"

# SPEC section 5: tangent proxies (semi-NMF of the activations) against the gradients
TANGENT = "tangent"  # the metric group
CONTROL_DRAW = "control_draw"
TANGENT_ENERGY = "tangent_energy"
CONTROL_ENERGY = "control_energy"
TANGENT_ENRICHMENT = "tangent_enrichment"
TANGENT_ALIGNMENT = "tangent_alignment"
CONTROL_ALIGNMENT = "control_alignment"
TANGENT_ENRICHMENT_BY_FREQUENCY = "tangent_enrichment_by_frequency"
TANGENT_ISOTROPIC = "tangent_isotropic_expectation"  # result attr: r / D, the isotropic yardstick
PCA_ENERGY = "pca_energy"
TANGENT_ENRICHMENT_VS_PCA = "tangent_enrichment_vs_pca"
OPTIMAL_ENERGY = "optimal_energy"
ACTIVATION_ENERGY = "activation_energy"
TANGENT_ALIGNMENT_WEIGHTED = "tangent_alignment_weighted"
LOCAL_TANGENT_ENERGY = "local_tangent_energy"
LOCAL_TANGENT_NULL = "local_tangent_null"
RADIAL_ENERGY = "radial_energy"
RADIAL_NULL = "radial_null"
RADIAL_EXCESS = "radial_excess"
LOCAL_TANGENT_EXCESS = "local_tangent_excess"
PCA_ENERGY_CENTRED = "pca_energy_centred"
BOUND = "bound"  # dim of the *_ci intervals: low, high
TANGENT_ENERGY_CI = "tangent_energy_ci"
TANGENT_ENRICHMENT_VS_PCA_CI = "tangent_enrichment_vs_pca_ci"
LOCAL_TANGENT_ENERGY_CI = "local_tangent_energy_ci"
LOCAL_TANGENT_NULL_CI = "local_tangent_null_ci"
LOCAL_TANGENT_EXCESS_CI = "local_tangent_excess_ci"
TANGENT_SUBSPACE_STABILITY = "tangent_subspace_stability"
TANGENT_ENRICHMENT_VS_PCA_BY_FREQUENCY = "tangent_enrichment_vs_pca_by_frequency"
TANGENT_METRIC_REASON = "metric_reason_tangent"  # int8 codes of the tangent fit (attrs: tangent_reason_codes)

# SPEC section 6: similarity and dynamics across checkpoints and layers
SIMILARITY = "similarity"  # the metric group of the CKA statistics
UPDATES = "updates"  # the metric group of representation updates
CKA_LAYERS = "cka_layers"
CKA_CHECKPOINTS = "cka_checkpoints"
DEBIASED_SUFFIX = "_debiased"  # SPEC 8: CKA from the unbiased HSIC estimator (Song et al. 2012)
CKA_LAYERS_DEBIASED = CKA_LAYERS + DEBIASED_SUFFIX
CKA_CHECKPOINTS_DEBIASED = CKA_CHECKPOINTS + DEBIASED_SUFFIX
LAYER_OTHER = "layer_other"
REPRESENTATION = "representation"
CKA_REFERENCE = "cka_reference"  # result attr: the reference checkpoint (its coordinate value)
UPDATE_NORM = "update_norm"
UPDATE_TANGENT_ENERGY = "update_tangent_energy"
UPDATE_PCA_ENERGY = "update_pca_energy"
