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

The Gram matrices are accumulated over column (feature) chunks of the views
(:func:`gram_blocks`): each chunk's contrast rows and centred means are built
in float64, stacked, and added to one ``(n_r + N) x (n_r + N)`` Gram with a
symmetric rank-k update. Peak memory is then the Gram plus one chunk, instead
of several float64 copies of all ``d`` columns (at ``d = 65536`` and 4096
rows: 5.6 GiB before, a few hundred MiB now; see ``benchmarks/bench_dual.py``).
"""

import numpy as np
from scipy import linalg
from scipy.linalg import blas

from ._covariance import is_streaming_estimator, shrinkage_coefficient
from ._spectrum import singular_ridge, tau_from_trace
from ._statistics import residual_contrast_rows

__all__ = ["dual_mean_invariant_snr", "gram_blocks"]

# float64 bytes of one column chunk of the stacked contrast rows and means;
# large enough that each rank-k update runs at GEMM speed, small next to
# the Gram itself at the widths where the dual form is used
CHUNK_BYTES = 64 * 2**20


def gram_blocks(views, chunk_bytes=CHUNK_BYTES):
    """Gram matrices of the residual contrast rows ``R`` and centred means ``M``.

    Built over column chunks of ``views`` so that no float64 copy of all the
    features exists at once.

    Parameters
    ----------
    views : ndarray of shape (n_images, n_views, n_features)
        Grouped views, any float dtype (each chunk is converted to float64).
    chunk_bytes : int, default=CHUNK_BYTES
        Float64 bytes of one chunk of the stacked rows ``[R; M]``.

    Returns
    -------
    gram_r : ndarray of shape (n_rows, n_rows)
        ``R R^T`` with ``n_rows = n_images * (n_views - 1)``.
    cross : ndarray of shape (n_rows, n_images)
        ``R M^T``.
    gram_m : ndarray of shape (n_images, n_images)
        ``M M^T``.
    """
    n_images, n_views, d = views.shape
    n_rows = n_images * (n_views - 1)
    n_stacked = n_rows + n_images
    width = int(min(d, max(64, chunk_bytes // (8 * n_stacked))))
    # Fortran order: syrk updates it in place
    gram = np.zeros((n_stacked, n_stacked), dtype=np.float64, order="F")
    stacked = np.empty((n_stacked, width), dtype=np.float64)
    for start in range(0, d, width):
        chunk = np.asarray(views[:, :, start:start + width], dtype=np.float64)
        w = chunk.shape[2]
        block = stacked[:, :w] if w == width else np.empty((n_stacked, w), dtype=np.float64)
        block[:n_rows] = residual_contrast_rows(chunk)
        means = chunk.mean(axis=1)
        means -= means.mean(axis=0)
        block[n_rows:] = means
        # C-ordered (n_stacked, w) is Fortran (w, n_stacked): trans=1 gives block @ block.T
        gram = blas.dsyrk(1.0, block.T, beta=1.0, c=gram, trans=1, lower=1, overwrite_c=1)
        del chunk, means
    del stacked, block
    # syrk filled the lower triangle only
    gram_r, gram_m = (np.tril(part) + np.tril(part, -1).T
                      for part in (gram[:n_rows, :n_rows], gram[n_rows:, n_rows:]))
    cross = np.ascontiguousarray(gram[n_rows:, :n_rows].T)
    return gram_r, cross, gram_m


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
    gram_r, cross, gram_m = gram_blocks(views)
    n_rows = gram_r.shape[0]
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
