"""Covariance estimation for the invariant and residual parts, with shrinkage.

Two routes, same answers:

* streaming (from :class:`GroupedViewStatistics` alone): the empirical
  covariance and sklearn's ``EmpiricalCovariance``, ``ShrunkCovariance``,
  ``LedoitWolf`` and ``OAS`` need only the scatter matrix, the row count and
  (Ledoit-Wolf) the sum of fourth powers of the row norms, all of which the
  statistics hold. These reproduce sklearn's estimators fitted on the same rows.
* rows: any other sklearn covariance estimator (``MinCovDet``,
  ``GraphicalLasso``, ...) is cloned and fitted on the residual contrast rows
  (``N (V - 1)`` rows) and on the centred image means (``N`` rows).

The rows: residual rows are orthonormal within-image contrasts (already
centred), so estimators are fitted with ``assume_centered=True`` and see
``N (V - 1)`` samples. The image means are centred, fitted the same way (so an
estimator divides by ``N``), and the result is rescaled by ``N / (N - 1)`` so
that ``Sigma_s`` has ``N - 1`` degrees of freedom.
"""

import numpy as np
from sklearn.base import clone
from sklearn.covariance import OAS, EmpiricalCovariance, LedoitWolf, ShrunkCovariance

from ._statistics import residual_contrast_rows

__all__ = [
    "ledoit_wolf_from_moments",
    "oas_from_moments",
    "shrunk_from_moments",
    "shrinkage_coefficient",
    "is_streaming_estimator",
    "estimate_covariances",
    "project_psd",
]


def _shrink(emp_cov, shrinkage):
    mu = np.trace(emp_cov) / emp_cov.shape[0]
    shrunk = (1.0 - shrinkage) * emp_cov
    shrunk.flat[:: emp_cov.shape[0] + 1] += shrinkage * mu
    return shrunk


def ledoit_wolf_shrinkage_from_moments(n_samples, n_features, trace, frobenius2, fourth):
    """Ledoit-Wolf coefficient from scalars, as sklearn's ``ledoit_wolf_shrinkage``.

    Parameters
    ----------
    n_samples, n_features : int
        Rows and columns of the centred data ``X``.
    trace : float
        ``tr(S)`` with ``S = X.T @ X / n_samples``.
    frobenius2 : float
        ``||S||_F^2``.
    fourth : float
        ``sum_k ||x_k||^4`` (the sum of ``X2.T @ X2``, ``X2 = X**2``).

    Returns
    -------
    shrinkage : float
    """
    if n_features == 1:
        return 0.0
    mu = trace / n_features
    beta_ = (fourth / n_samples - frobenius2) / (n_features * n_samples)
    delta = (frobenius2 - 2.0 * mu * trace + n_features * mu**2) / n_features
    beta = min(beta_, delta)
    return 0.0 if beta == 0 else float(beta / delta)


def oas_shrinkage_from_moments(n_samples, n_features, trace, frobenius2):
    """OAS coefficient from scalars, as sklearn's ``OAS`` (same arguments as above).

    Parameters
    ----------
    n_samples, n_features : int
    trace : float
        ``tr(S)``.
    frobenius2 : float
        ``||S||_F^2``.

    Returns
    -------
    shrinkage : float
    """
    if n_features == 1:
        return 0.0
    alpha = frobenius2 / n_features**2
    mu = trace / n_features
    num = alpha + mu**2
    den = (n_samples + 1) * (alpha - mu**2 / n_features)
    return 1.0 if den == 0 else float(min(num / den, 1.0))


def ledoit_wolf_from_moments(scatter, fourth, n_samples):
    """Ledoit-Wolf shrinkage from moments, as sklearn's ``LedoitWolf`` on the rows.

    Parameters
    ----------
    scatter : ndarray of shape (d, d)
        ``X.T @ X`` of centred rows ``X``.
    fourth : float
        ``sum_k ||x_k||^4`` over the rows (the sum of ``X2.T @ X2``, ``X2 = X**2``).
    n_samples : int
        Number of rows.

    Returns
    -------
    covariance : ndarray of shape (d, d)
        ``(1 - delta) S + delta mu I`` with ``S = scatter / n_samples``,
        ``mu = tr(S) / d``.
    shrinkage : float
        ``delta`` in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.covariance import LedoitWolf
    >>> from skicr.metrics import ledoit_wolf_from_moments
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(30, 10))
    >>> X -= X.mean(axis=0)
    >>> fourth = float((np.sum(X**2, axis=1) ** 2).sum())
    >>> covariance, shrinkage = ledoit_wolf_from_moments(X.T @ X, fourth, 30)
    >>> reference = LedoitWolf(assume_centered=True).fit(X)
    >>> bool(np.allclose(covariance, reference.covariance_))
    True
    >>> bool(np.isclose(shrinkage, reference.shrinkage_))
    True
    """
    emp_cov = scatter / n_samples
    shrinkage = ledoit_wolf_shrinkage_from_moments(
        n_samples, emp_cov.shape[0], np.trace(emp_cov), float(np.sum(emp_cov**2)), fourth,
    )
    return _shrink(emp_cov, shrinkage), shrinkage


def oas_from_moments(scatter, n_samples):
    """Oracle Approximating Shrinkage from moments, as sklearn's ``OAS`` on the rows.

    Parameters
    ----------
    scatter : ndarray of shape (d, d)
        ``X.T @ X`` of centred rows.
    n_samples : int
        Number of rows.

    Returns
    -------
    covariance : ndarray of shape (d, d)
    shrinkage : float

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.covariance import OAS
    >>> from skicr.metrics import oas_from_moments
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(30, 10))
    >>> X -= X.mean(axis=0)
    >>> covariance, shrinkage = oas_from_moments(X.T @ X, 30)
    >>> reference = OAS(assume_centered=True).fit(X)
    >>> bool(np.allclose(covariance, reference.covariance_))
    True
    >>> bool(np.isclose(shrinkage, reference.shrinkage_))
    True
    """
    emp_cov = scatter / n_samples
    shrinkage = oas_shrinkage_from_moments(
        n_samples, emp_cov.shape[0], np.trace(emp_cov), float(np.sum(emp_cov**2)),
    )
    return _shrink(emp_cov, shrinkage), shrinkage


def shrinkage_coefficient(estimator, n_samples, n_features, trace, frobenius2, fourth):
    """Shrinkage a streaming estimator applies, from scalar moments of its rows.

    Parameters
    ----------
    estimator : None or EmpiricalCovariance, ShrunkCovariance, LedoitWolf, OAS
    n_samples, n_features : int
    trace, frobenius2, fourth : float
        ``tr(S)``, ``||S||_F^2``, ``sum_k ||x_k||^4`` of the centred rows.

    Returns
    -------
    shrinkage : float
        0 for the empirical covariance.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.covariance import ShrunkCovariance
    >>> from skicr.metrics import shrinkage_coefficient
    >>> shrinkage_coefficient(ShrunkCovariance(shrinkage=0.3), 50, 4, 4.0, 5.0, 100.0)
    0.3
    >>> shrinkage_coefficient(None, 50, 4, 4.0, 5.0, 100.0)
    0.0
    """
    if estimator is None or type(estimator) is EmpiricalCovariance:
        return 0.0
    if type(estimator) is ShrunkCovariance:
        return float(estimator.shrinkage)
    if type(estimator) is LedoitWolf:
        return ledoit_wolf_shrinkage_from_moments(n_samples, n_features, trace, frobenius2, fourth)
    if type(estimator) is OAS:
        return oas_shrinkage_from_moments(n_samples, n_features, trace, frobenius2)
    raise TypeError(f"{type(estimator).__name__} is not a streaming covariance estimator.")


def shrunk_from_moments(scatter, n_samples, shrinkage):
    """Fixed shrinkage ``(1 - s) S + s tr(S)/d I``, as sklearn's ``ShrunkCovariance``.

    Parameters
    ----------
    scatter : ndarray of shape (d, d)
        ``X.T @ X`` of centred rows.
    n_samples : int
        Number of rows.
    shrinkage : float
        Shrinkage coefficient in [0, 1].

    Returns
    -------
    covariance : ndarray of shape (d, d)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.covariance import ShrunkCovariance
    >>> from skicr.metrics import shrunk_from_moments
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(30, 5))
    >>> X -= X.mean(axis=0)
    >>> covariance = shrunk_from_moments(X.T @ X, 30, 0.2)
    >>> reference = ShrunkCovariance(shrinkage=0.2, assume_centered=True).fit(X)
    >>> bool(np.allclose(covariance, reference.covariance_))
    True
    """
    return _shrink(scatter / n_samples, shrinkage)



def is_streaming_estimator(estimator):
    """Whether ``estimator`` can be computed from the statistics alone.

    Parameters
    ----------
    estimator : object or None
        A covariance estimator.

    Returns
    -------
    streaming : bool
        True for None and for exact instances of sklearn's
        ``EmpiricalCovariance``, ``ShrunkCovariance``, ``LedoitWolf`` and
        ``OAS`` (not subclasses, whose ``fit`` may do something else).

    Examples
    --------
    >>> from sklearn.covariance import LedoitWolf, MinCovDet
    >>> from skicr.metrics import is_streaming_estimator
    >>> is_streaming_estimator(None), is_streaming_estimator(LedoitWolf())
    (True, True)
    >>> is_streaming_estimator(MinCovDet())      # needs the rows themselves
    False
    """
    return estimator is None or type(estimator) in (
        EmpiricalCovariance, ShrunkCovariance, LedoitWolf, OAS,
    )


def _streaming_covariance(estimator, scatter, fourth, n_samples):
    emp_cov = scatter / n_samples
    shrinkage = shrinkage_coefficient(
        estimator, n_samples, emp_cov.shape[0], np.trace(emp_cov), float(np.sum(emp_cov**2)), fourth,
    )
    return (_shrink(emp_cov, shrinkage) if shrinkage else emp_cov), shrinkage


def _fit_on_rows(estimator, rows):
    fitted = clone(estimator)
    if "assume_centered" in fitted.get_params():
        fitted.set_params(assume_centered=True)
    fitted.fit(rows)
    covariance = getattr(fitted, "covariance_", None)
    if covariance is None:
        raise TypeError(
            f"covariance_estimator {type(estimator).__name__} has no covariance_ attribute "
            "after fit; pass an sklearn covariance estimator (EmpiricalCovariance, "
            "LedoitWolf, OAS, ShrunkCovariance, MinCovDet, GraphicalLasso, ...)."
        )
    covariance = np.asarray(covariance, dtype=np.float64)
    d = rows.shape[1]
    if covariance.shape != (d, d):
        raise ValueError(
            f"covariance_estimator returned covariance_ of shape {covariance.shape}, expected {(d, d)}."
        )
    return covariance, float(getattr(fitted, "shrinkage_", np.nan))


def project_psd(matrix):
    """Nearest positive semi-definite matrix in Frobenius norm (clip negative eigenvalues).

    Parameters
    ----------
    matrix : ndarray of shape (d, d)
        Symmetric matrix.

    Returns
    -------
    psd : ndarray of shape (d, d)

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import project_psd
    >>> project_psd(np.array([[1.0, 0.0], [0.0, -2.0]]))
    array([[1., 0.],
           [0., 0.]])
    """
    sym = (matrix + matrix.T) / 2.0
    eigenvalues, eigenvectors = np.linalg.eigh(sym)
    if eigenvalues.min() >= 0:
        return sym
    clipped = np.clip(eigenvalues, 0.0, None)
    return (eigenvectors * clipped) @ eigenvectors.T


def estimate_covariances(stats, covariance_estimator=None, bias_correction=False, views=None):
    """Sigma_s and Sigma_xi from grouped-view statistics.

    Parameters
    ----------
    stats : GroupedViewStatistics
        Accumulated statistics (at least 2 images).
    covariance_estimator : sklearn covariance estimator or None, default=None
        None for the unbiased empirical covariances. ``EmpiricalCovariance``,
        ``ShrunkCovariance``, ``LedoitWolf`` and ``OAS`` are computed from the
        statistics; any other estimator is fitted on rows and needs ``views``.
    bias_correction : bool, default=False
        False: the plug-in ``Sigma_s = cov(m)`` (the seed paper's), biased up by
        ``Sigma_xi / V``. True: ``Sigma_s = PSD(cov(m) - Sigma_xi / V)``,
        unbiased before the projection, so ICR no longer depends on ``V``.
    views : ndarray of shape (n_images, n_views, n_features) or None
        The data, required for non-streaming estimators.

    Returns
    -------
    covariance_s : ndarray of shape (d, d)
    covariance_xi : ndarray of shape (d, d)
    info : dict
        ``shrinkage_s`` and ``shrinkage_xi`` (NaN where the estimator has none).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.covariance import LedoitWolf
    >>> from skicr.metrics import accumulate, estimate_covariances
    >>> rng = np.random.default_rng(0)
    >>> views = rng.normal(size=(100, 4, 8))
    >>> covariance_s, covariance_xi, info = estimate_covariances(accumulate(views))
    >>> covariance_s.shape, covariance_xi.shape
    ((8, 8), (8, 8))
    >>> _, _, info = estimate_covariances(accumulate(views), LedoitWolf())
    >>> 0 <= info["shrinkage_xi"] <= 1
    True
    """
    n_images = stats.n_images
    stats._check_enough()
    mean_scatter, mean_fourth = stats.centred_mean_moments()
    if is_streaming_estimator(covariance_estimator):
        cov_m, shrink_s = _streaming_covariance(covariance_estimator, mean_scatter, mean_fourth, n_images)
        cov_xi, shrink_xi = _streaming_covariance(
            covariance_estimator, stats.residual_scatter, stats.residual_fourth, stats.n_residual_rows,
        )
    else:
        if views is None:
            raise ValueError(
                f"{type(covariance_estimator).__name__} needs the data itself (it is not one of "
                "EmpiricalCovariance, ShrunkCovariance, LedoitWolf, OAS, which stream); "
                "use fit rather than partial_fit."
            )
        means = views.mean(axis=1)
        cov_m, shrink_s = _fit_on_rows(covariance_estimator, means - means.mean(axis=0))
        cov_xi, shrink_xi = _fit_on_rows(covariance_estimator, residual_contrast_rows(views))
    # every route divides the mean rows by N: move to N - 1 degrees of freedom
    cov_m = cov_m * (n_images / (n_images - 1))
    cov_xi = (cov_xi + cov_xi.T) / 2.0
    if bias_correction:
        cov_s = project_psd(cov_m - cov_xi / stats.n_views)
    else:
        cov_s = (cov_m + cov_m.T) / 2.0
    return cov_s, cov_xi, {"shrinkage_s": shrink_s, "shrinkage_xi": shrink_xi}
