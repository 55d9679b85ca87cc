"""What each result name means, in one line each (SPEC 9: results describe themselves).

Beside ``names.py`` (the names), this is the one table of their meanings: every data variable of
a results store gets ``long_name``, ``description`` and ``units`` ("1" when dimensionless) from it,
and reason codes their CF ``flag_values`` / ``flag_meanings``. A statistics plug-in describes its
own names with :func:`describe`. Names built from a described name with a SPEC suffix (``_all``,
``_pooled``, ``_isotropic``, ``_ci``, ``_debiased``, ``_centred``) are described by the rule of
the suffix, so ``alpha_pooled_isotropic`` needs no entry of its own.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from tgo_analysis import names as N

DIMENSIONLESS = "1"
ACTIVATION = "activation"  # the stored activations' own unit (whatever the model computes in)
ACTIVATION_SQUARED = "activation^2"


@dataclass(frozen=True)
class Description:
    """``flags``: reason codes -> meaning, or ``"module:NAME"`` of such a mapping (read on use)."""

    long_name: str
    description: str
    units: str = DIMENSIONLESS
    flags: Mapping[int, str] | str | None = None

    def flag_codes(self) -> dict[int, str]:
        if self.flags is None:
            return {}
        if isinstance(self.flags, str):
            module, attribute = self.flags.split(":")
            return {int(k): str(v) for k, v in getattr(importlib.import_module(module), attribute).items()}
        return {int(k): str(v) for k, v in self.flags.items()}


DESCRIPTIONS: dict[str, Description] = {}


def describe(name: str, long_name: str, description: str, units: str = DIMENSIONLESS,
             flags: Mapping[int, str] | str | None = None) -> Description:
    """Register what result ``name`` means (a plug-in calls this for each name it writes)."""
    entry = Description(long_name, " ".join(description.split()), units, flags)
    DESCRIPTIONS[name] = entry
    return entry


_METRIC_REASONS = "tgo_analysis.kernels.metrics:METRIC_REASONS"
_TANGENT_REASONS = "tgo_analysis.statistics.tangent:REASON_CODES"

# SPEC 2 and 3: per (checkpoint, layer, token) spectra of the feature covariance over samples
for _name, _long, _text, _units in (
    (N.EIGENVALUES, "eigenvalues", "eigenvalues of the feature covariance over samples, descending "
     "(NaN beyond the spectrum's length)", ACTIVATION_SQUARED),
    (N.ALPHA, "power-law exponent alpha", "slope of the weighted least-squares fit of log lambda_i on "
     "-log i over the fit range (alpha_fit_range attr)", DIMENSIONLESS),
    (N.ALPHA_R2, "alpha fit R^2", "R^2 of the power-law fit behind alpha", DIMENSIONLESS),
    (N.EFFECTIVE_RANK, "effective rank", "exp(H), H the Shannon entropy of the normalised nonzero "
     "eigenvalues (Roy & Vetterli)", DIMENSIONLESS),
    (N.STABLE_RANK, "stable rank", "sum of the eigenvalues / the largest eigenvalue", DIMENSIONLESS),
    (N.PARTICIPATION_RATIO, "participation ratio", "(sum lambda)^2 / sum lambda^2", DIMENSIONLESS),
    (N.SPECTRAL_ENTROPY, "spectral entropy", "H / log m: the entropy of the normalised nonzero "
     "eigenvalues over its maximum", DIMENSIONLESS),
    (N.SPECTRAL_FLATNESS, "spectral flatness", "geometric mean / arithmetic mean of the nonzero "
     "eigenvalues", DIMENSIONLESS),
    (N.TOP1_SHARE, "top-1 eigenvalue share", "lambda_1 / sum lambda: the anisotropy of Razzhigaev et al.",
     DIMENSIONLESS),
    (N.COSINE_ANISOTROPY, "cosine anisotropy", "mean cosine similarity over pairs of distinct un-centred "
     "sample vectors (Ethayarajh 2019)", DIMENSIONLESS),
    (N.MEAN_NORM, "mean norm", "mean L2 norm of the un-centred token vectors over samples", ACTIVATION),
    (N.TOKEN_CORRELATION, "token correlation", "Pearson correlation between two tokens' flattened "
     "(sample x feature) activations", DIMENSIONLESS),
    (N.MEAN_TOKEN_CORRELATION, "mean token correlation", "mean of the strict lower triangle of "
     "token_correlation", DIMENSIONLESS),
    (N.INTRINSIC_DIMENSION, "intrinsic dimension", "TwoNN estimate (Facco et al. 2017) on the un-centred "
     "per-sample vectors", DIMENSIONLESS),
    (N.ALPHA_CLUSTER, "alpha trajectory cluster", "cluster id of each token's alpha trajectory across "
     "layers (-1: a trajectory with NaN)", DIMENSIONLESS),
    (N.METRIC_REASON, "metric reason code", "why a spectral metric of this unit is NaN (0: it is not)",
     DIMENSIONLESS),
    # SPEC 8: every spectrum beside its storage noise floor and its sample size
    ("noise_floor", "storage noise floor", "u^2 E|x|^2 / (3D): the per-eigenvalue variance that rounding to "
     "the stored dtype adds", ACTIVATION_SQUARED),
    ("resolved_rank", "resolved rank", "count of eigenvalues above 10 x noise_floor (and above "
     "lambda_1 D eps(float64))", DIMENSIONLESS),
    ("n_samples", "number of samples", "how many samples entered this unit's covariance", DIMENSIONLESS),
):
    describe(_name, _long, _text, _units, _METRIC_REASONS if _name == N.METRIC_REASON else None)

# SPEC 5: pooled positions, token frequency
describe(N.FREQUENCY_CENTROID_SPEARMAN, "frequency-centroid Spearman rho",
         "Spearman rho between log vocab_count and the distance to the layer's pooled mean, over positions")
describe(N.TOP1_SHARE_BY_FREQUENCY, "top-1 share by frequency bucket",
         "top1_share of the positions of one frequency bucket (equal-count subsample)")
describe(N.EFFECTIVE_RANK_BY_FREQUENCY, "effective rank by frequency bucket",
         "effective_rank of the positions of one frequency bucket (equal-count subsample)")
describe(N.MEAN_NORM_BY_FREQUENCY, "mean norm by frequency bucket",
         "mean L2 norm of the positions of one frequency bucket", ACTIVATION)
describe(N.CENTROID_DISTANCE_BY_FREQUENCY, "centroid distance by frequency bucket",
         "mean distance of the positions of one frequency bucket to the layer's pooled mean", ACTIVATION)

# SPEC 5 and 8: tangent proxies against the gradients (held-out positions)
for _name, _long, _text in (
    (N.TANGENT_ENERGY, "tangent energy E_T", "share of held-out gradient energy inside the row space of "
     "the layer's semi-NMF dictionary (rank r)"),
    (N.CONTROL_ENERGY, "control energy E_N", "the same share for r random directions orthogonal to the "
     "tangent proxy, per seeded draw"),
    (N.TANGENT_ENRICHMENT, "tangent enrichment over normal controls", "E_T / mean over draws of E_N "
     "(gradients that share the activations' anisotropy also score >> 1)"),
    (N.PCA_ENERGY, "PCA energy", "share of held-out gradient energy inside the top-r right singular "
     "subspace of the same un-centred activations the semi-NMF is fitted to (matched centring)"),
    (N.PCA_ENERGY_CENTRED, "PCA energy (centred)", "pca_energy with the top-r eigenvectors of the centred "
     "covariance"),
    (N.TANGENT_ENRICHMENT_VS_PCA, "tangent enrichment over PCA", "E_T / pca_energy: above 1 only when the "
     "tangent proxy holds gradient energy that variance does not explain"),
    (N.OPTIMAL_ENERGY, "optimal rank-r energy", "the most gradient energy any rank-r subspace captures"),
    (N.ACTIVATION_ENERGY, "activation energy", "share of the activations' un-centred second moment inside "
     "the tangent proxy"),
    (N.TANGENT_ALIGNMENT, "tangent alignment", "|Q_T^T U_r|_F^2 / r, U_r the top-r eigenvectors of the "
     "gradient second moment"),
    (N.CONTROL_ALIGNMENT, "control alignment", "the same alignment for the orthogonal controls (isotropic: "
     "about r/D)"),
    (N.TANGENT_ALIGNMENT_WEIGHTED, "weighted tangent alignment", "tangent alignment weighted by the "
     "gradient eigenvalues"),
    (N.LOCAL_TANGENT_ENERGY, "local tangent energy", "mean share of each held-out gradient inside the span "
     "of the atoms active at its own position"),
    (N.LOCAL_TANGENT_NULL, "local tangent null", "local_tangent_energy with the atoms of another position "
     "(seeded permutation)"),
    (N.LOCAL_TANGENT_EXCESS, "local tangent excess", "local_tangent_energy - local_tangent_null, paired"),
    (N.RADIAL_ENERGY, "radial energy", "mean share of each gradient along its own activation direction"),
    (N.RADIAL_NULL, "radial null", "radial_energy with the activation of another position (permuted)"),
    (N.RADIAL_EXCESS, "radial excess", "radial_energy - radial_null, paired"),
    (N.TANGENT_SUBSPACE_STABILITY, "tangent subspace stability", "mean cos^2 of the principal angles "
     "between the tangent proxies fitted from two seeds"),
    (N.TANGENT_ENRICHMENT_BY_FREQUENCY, "tangent enrichment by frequency bucket",
     "tangent_enrichment on an equal-count subsample of one frequency bucket"),
    (N.TANGENT_ENRICHMENT_VS_PCA_BY_FREQUENCY, "tangent enrichment over PCA by frequency bucket",
     "tangent_enrichment_vs_pca on an equal-count subsample of one frequency bucket"),
    (N.TANGENT_METRIC_REASON, "tangent reason code", "whether this unit's semi-NMF fits converged and "
     "its held-out gradients carry energy (0: ok)"),
):
    describe(_name, _long, _text, flags=_TANGENT_REASONS if _name == N.TANGENT_METRIC_REASON else None)

# SPEC 6: similarity and dynamics
describe(N.CKA_LAYERS, "linear CKA between layers", "linear CKA (Kornblith et al. 2019) between two layers "
         "of one checkpoint, exact over all samples")
describe(N.CKA_CHECKPOINTS, "linear CKA to the reference checkpoint", "linear CKA between each checkpoint "
         "and the reference checkpoint (cka_reference attr) at the same layer")
describe(N.UPDATE_NORM, "update norm", "mean over valid positions of |h_(k+1) - h_k| between consecutive "
         "checkpoints (NaN at the last)", ACTIVATION)
describe(N.UPDATE_TANGENT_ENERGY, "update tangent energy", "share of the representation update's energy "
         "inside the tangent proxy of the earlier checkpoint")
describe(N.UPDATE_PCA_ENERGY, "update PCA energy", "share of the representation update's energy inside "
         "the top-r PCA subspace of the earlier checkpoint")

# suffix -> (long name format, description format): the variant of the described name before it
SUFFIXES: dict[str, tuple[str, str]] = {
    "_isotropic": ("{long} of isotropic noise", "mean {name} of seeded draws of N(0, I_D) with this unit's n "
                   "and D: the value the sample size alone produces; {text}"),
    "_ci": ("{long}, 5-95 % interval", "seeded bootstrap 5-95 % interval over samples (bound: low, high) of "
            "{name}, each replicate refitting the basis: {text}"),
    N.ALL_TOKENS_SUFFIX: ("{long} (all tokens)", "{text}; of all tokens concatenated into one vector per "
                          "sample"),
    N.POOLED_SUFFIX: ("{long} (pooled positions)", "{text}; of every valid token vector of the layer "
                      "pooled as a point"),
    "_debiased": ("{long} (debiased)", "{text}; from the unbiased HSIC estimator (Song et al. 2012)"),
    "_centred": ("{long} (centred)", "{text}; after removing each token's per-feature mean"),
}


def description_of(name: str) -> Description | None:
    """The description of a result name: its own entry, else its SPEC suffix over a described name."""
    if name in DESCRIPTIONS:
        return DESCRIPTIONS[name]
    for suffix, (long_format, text_format) in SUFFIXES.items():
        if name.endswith(suffix) and (base := description_of(name[: -len(suffix)])) is not None:
            base_name = name[: -len(suffix)]
            return Description(long_format.format(long=base.long_name),
                               text_format.format(name=base_name, text=base.description),
                               base.units, base.flags)
    return None


def flag_meaning(text: str) -> str:
    """One CF flag_meanings word from a reason sentence: its first clause, lower case, underscored."""
    clause = re.split(r"[:;(,]", text, maxsplit=1)[0]
    return "_".join(re.findall(r"[a-z0-9]+", clause.lower())[:8]) or "unnamed"
