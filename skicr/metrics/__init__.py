"""Functional core of skicr: grouped-view statistics, covariances, spectrum, ICR, baselines.

No estimators live here; :class:`skicr.InvariantResidualDecomposer` and
:class:`skicr.ICRScorer` are thin shells over these functions.
"""

from ._baselines import (
    alignment,
    alpha_req,
    effective_rank,
    lidar,
    lidar_from_statistics,
    rankme,
    rankme_from_statistics,
    uniformity,
)
from ._covariance import (
    check_covariance_estimator,
    estimate_covariances,
    is_streaming_estimator,
    ledoit_wolf_from_moments,
    needs_fourth_moments,
    oas_from_moments,
    project_psd,
    shrinkage_coefficient,
    shrunk_from_moments,
)
from ._dual import DualDecomposition, dual_decompose, dual_heldout_icr, dual_mean_invariant_snr
from ._icr import Decomposition, accumulate, decompose, heldout_icr, heldout_icr_from_statistics, icr_score
from ._layers import heldout_spectrum, invariant_dimensions, invariant_effective_rank
from ._spectrum import (
    FeatureScaleWarning,
    SingularResidualWarning,
    eigenspace_groups,
    eigenspace_snr,
    generalized_spectrum,
    heldout_eigenvalues,
    icr_from_eigenvalues,
    mean_invariant_snr,
    regularized_residual,
    resolve_tau,
    singular_ridge,
    tau_from_trace,
)
from ._statistics import GroupedViewStatistics, data_scale, principal_contrast_rows, residual_contrast_rows
from ._validation import check_grouped_views

__all__ = [
    "Decomposition",
    "FeatureScaleWarning",
    "GroupedViewStatistics",
    "SingularResidualWarning",
    "accumulate",
    "alignment",
    "alpha_req",
    "check_covariance_estimator",
    "check_grouped_views",
    "data_scale",
    "decompose",
    "DualDecomposition",
    "dual_decompose",
    "dual_heldout_icr",
    "dual_mean_invariant_snr",
    "effective_rank",
    "eigenspace_groups",
    "eigenspace_snr",
    "estimate_covariances",
    "generalized_spectrum",
    "heldout_eigenvalues",
    "heldout_icr",
    "heldout_icr_from_statistics",
    "heldout_spectrum",
    "icr_from_eigenvalues",
    "icr_score",
    "invariant_dimensions",
    "invariant_effective_rank",
    "is_streaming_estimator",
    "ledoit_wolf_from_moments",
    "lidar",
    "lidar_from_statistics",
    "mean_invariant_snr",
    "needs_fourth_moments",
    "oas_from_moments",
    "project_psd",
    "rankme",
    "rankme_from_statistics",
    "regularized_residual",
    "principal_contrast_rows",
    "residual_contrast_rows",
    "resolve_tau",
    "singular_ridge",
    "tau_from_trace",
    "shrinkage_coefficient",
    "shrunk_from_moments",
    "uniformity",
]
