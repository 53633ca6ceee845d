"""ICR in the dual (Gram) form, for features wider than the number of rows.

Flattened spatial feature maps reach ``d = C h w`` in the tens of thousands,
where ``d x d`` covariances no longer fit in memory. With the residual contrast
rows ``R`` (``n_r = N (V - 1)`` rows) and the centred image means ``M``
(``N`` rows), every covariance handled here has the form ``a X^T X + b I``
(empirical, fixed, Ledoit-Wolf or OAS shrinkage), so by Woodbury

    B = Sigma_xi + tau I = a_x R^T R + c I,
    B^-1 = (I - a_x R^T K^-1 R) / c,   K = c I + a_x R R^T   (n_r x n_r),

and ``tr(B^-1 Sigma_s)`` needs only ``R R^T``, ``R M^T`` and ``||M||_F^2``:
nothing of size ``d x d`` is ever formed. The shrinkage coefficients need
``||S||_F^2 = ||X X^T||_F^2 / n^2`` and ``sum_k ||x_k||^4 = sum diag(X X^T)^2``,
also Gram quantities.
"""

import numpy as np
from scipy import linalg

from ._covariance import is_streaming_estimator, shrinkage_coefficient
from ._spectrum import singular_ridge, tau_from_trace
from ._statistics import residual_contrast_rows

__all__ = ["dual_mean_invariant_snr"]


def _shrunk_form(estimator, gram, n_samples, n_features, dof):
    """Coefficients (a, b) of ``a X^T X + b I`` for the estimator on rows X."""
    norm2 = float(np.trace(gram))
    if estimator is None:
        return 1.0 / dof, 0.0, norm2
    frobenius2 = float(np.sum(gram**2)) / n_samples**2
    fourth = float(np.sum(np.diag(gram) ** 2))
    shrinkage = shrinkage_coefficient(
        estimator, n_samples, n_features, norm2 / n_samples, frobenius2, fourth,
    )
    # shrink at n_samples, then move to `dof` degrees of freedom
    scale = n_samples / dof
    return (1.0 - shrinkage) / n_samples * scale, shrinkage * norm2 / (n_samples * n_features) * scale, norm2


def dual_mean_invariant_snr(views, tau_abs=None, *, tau=1e-3, tau_mode="relative", covariance_estimator=None):
    """``tr((Sigma_xi + tau I)^-1 Sigma_s) / d`` through ``(rows x rows)`` systems only.

    Agrees with the primal :func:`mean_invariant_snr` on the plug-in
    covariances (and with streaming shrinkage estimators) wherever both fit.

    Parameters
    ----------
    views : ndarray of shape (n_images, n_views, n_features)
        Validated grouped views.
    tau_abs : float or None, default=None
        Absolute ridge; when None it follows ``tau`` and ``tau_mode``.
    tau : float, default=1e-3
    tau_mode : {"relative", "absolute"}, default="relative"
    covariance_estimator : None or EmpiricalCovariance, ShrunkCovariance, LedoitWolf, OAS
        Only estimators of the form ``a X^T X + b I`` have a dual form.

    Returns
    -------
    mean_snr : float
    """
    if not is_streaming_estimator(covariance_estimator):
        raise ValueError(
            f"The dual (Gram) form supports None, EmpiricalCovariance, ShrunkCovariance, "
            f"LedoitWolf and OAS; got {type(covariance_estimator).__name__}."
        )
    n_images, _, d = views.shape
    rows = residual_contrast_rows(np.asarray(views, dtype=np.float64))
    means = views.mean(axis=1, dtype=np.float64)
    means -= means.mean(axis=0)
    n_rows = rows.shape[0]
    gram_r = rows @ rows.T
    cross = rows @ means.T  # (n_rows, n_images)
    gram_m = means @ means.T
    a_x, b_x, norm_r2 = _shrunk_form(covariance_estimator, gram_r, n_rows, d, n_rows)
    a_s, b_s, norm_m2 = _shrunk_form(covariance_estimator, gram_m, n_images, d, n_images - 1)
    trace_xi = a_x * norm_r2 + d * b_x
    trace_s = a_s * norm_m2 + d * b_s
    if tau_abs is None:
        tau_abs = tau_from_trace(trace_xi, d, tau, tau_mode)
    c = b_x + tau_abs
    if not c > np.finfo(np.float64).eps * max(trace_xi, trace_s) / d:
        c = b_x + tau_abs + singular_ridge(trace_xi, trace_s, d, tau_abs)
    kernel = a_x * gram_r
    kernel.flat[:: n_rows + 1] += c
    factor = linalg.cho_factor(kernel, check_finite=False)
    signal = norm_m2 - a_x * float(np.sum(cross * linalg.cho_solve(factor, cross, check_finite=False)))
    total = a_s * signal
    if b_s:
        inverse_trace = d - a_x * float(np.trace(linalg.cho_solve(factor, gram_r, check_finite=False)))
        total += b_s * inverse_trace
    return max(total / (c * d), 0.0)
