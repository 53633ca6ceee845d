"""Covariance estimation for the invariant and residual parts, with shrinkage.

Two routes, same answers:

* streaming (from :class:`GroupedViewStatistics` alone): the empirical
  covariance and sklearn's ``EmpiricalCovariance``, ``ShrunkCovariance``,
  ``LedoitWolf`` and ``OAS`` need only the scatter matrix, the row count and
  (Ledoit-Wolf) a fourth-moment sum, all of which the statistics hold. These
  reproduce sklearn's estimators fitted on the same rows, except that
  Ledoit-Wolf's fourth-moment term for Sigma_xi is taken over images rather
  than contrast rows (``ledoit_wolf_shrinkage_from_moments``): the rows of
  one image are one basis among many, and a sum over them would change with
  the order of the views. For two views (one row per image) the two agree.
* rows: any other sklearn covariance estimator (``MinCovDet``,
  ``GraphicalLasso``, ...) is cloned and fitted on the residual contrast rows
  (``N (V - 1)`` rows, each image's in its principal basis) and on the
  centred image means (``N`` rows). Its ``covariance_`` must be finite,
  symmetric and positive semi-definite.

The rows: residual rows are orthonormal within-image contrasts (already
centred), so estimators are fitted with ``assume_centered=True`` and see
``N (V - 1)`` samples. The image means are centred, fitted the same way (so an
estimator divides by ``N``), and the result is rescaled by ``N / (N - 1)`` so
that ``Sigma_s`` has ``N - 1`` degrees of freedom.
"""

import re
from numbers import Integral, Real

import numpy as np
from sklearn.base import clone
from sklearn.covariance import OAS, EmpiricalCovariance, LedoitWolf, ShrunkCovariance
from sklearn.utils import get_tags
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    validate_parameter_constraints,
    validate_params,
)

from ._statistics import GroupedViewStatistics, principal_contrast_rows

__all__ = [
    "ledoit_wolf_from_moments",
    "oas_from_moments",
    "shrunk_from_moments",
    "shrinkage_coefficient",
    "is_streaming_estimator",
    "needs_fourth_moments",
    "estimate_covariances",
    "check_covariance_estimator",
    "check_estimated_covariance",
    "normalised_covariances",
    "project_psd",
]


def _shrink(emp_cov, shrinkage):
    mu = np.trace(emp_cov) / emp_cov.shape[0]
    shrunk = (1.0 - shrinkage) * emp_cov
    shrunk.flat[:: emp_cov.shape[0] + 1] += shrinkage * mu
    return shrunk


def ledoit_wolf_shrinkage_from_moments(
    n_samples, n_features, trace, frobenius2, fourth, rows_per_group=1,
):
    """Ledoit-Wolf coefficient from scalars; sklearn's ``ledoit_wolf_shrinkage`` for ``g = 1``.

    The rows come in independent groups of ``g`` rows each (``g = 1``: every
    row independent, sklearn's case; ``g = V - 1``: the contrast rows of one
    image). With ``C_j`` the scatter of group ``j`` (``E C_j = g Sigma``),
    ``S = sum_j C_j / n`` and ``fourth = sum_j ||C_j||_F^2``, the variance of
    ``S`` is estimated from the spread of the ``C_j`` around ``g S``:

    ``beta = (fourth / n - g ||S||_F^2) / (d n)``,

    which for ``g = 1`` (``||x x^T||_F^2 = ||x||^4``) is sklearn's
    ``(sum_k ||x_k||^4 / n - ||S||_F^2) / (d n)``. ``||C_j||_F`` does not depend
    on the basis of a group's rows, so neither does the coefficient.

    Parameters
    ----------
    n_samples, n_features : int
        Rows ``n`` and columns ``d`` of the centred data ``X``.
    trace : float
        ``tr(S)`` with ``S = X.T @ X / n_samples``.
    frobenius2 : float
        ``||S||_F^2``.
    fourth : float
        ``sum_j ||C_j||_F^2`` over the groups (for ``g = 1``,
        ``sum_k ||x_k||^4``, the sum of ``X2.T @ X2`` with ``X2 = X**2``).
    rows_per_group : int, default=1
        Rows ``g`` per independent group.

    Returns
    -------
    shrinkage : float
        In [0, 1].
    """
    if n_features == 1:
        return 0.0
    mu = trace / n_features
    beta_ = (fourth / n_samples - rows_per_group * frobenius2) / (n_features * n_samples)
    delta = (frobenius2 - 2.0 * mu * trace + n_features * mu**2) / n_features
    if not delta > 0:
        # S is a multiple of the identity already: shrinking changes nothing
        return 0.0
    beta = min(max(beta_, 0.0), delta)
    return float(beta / delta)


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


@validate_params(
    {"scatter": ["array-like"], "fourth": [Interval(Real, 0, None, closed="left")], "n_samples": [Interval(Integral, 1, None, closed="left")], "rows_per_group": [Interval(Integral, 1, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def ledoit_wolf_from_moments(scatter, fourth, n_samples, rows_per_group=1):
    """Ledoit-Wolf shrinkage from moments, as sklearn's ``LedoitWolf`` on the rows.

    Parameters
    ----------
    scatter : ndarray of shape (d, d)
        ``X.T @ X`` of centred rows ``X``.
    fourth : float
        ``sum_k ||x_k||^4`` over the rows (the sum of ``X2.T @ X2``, ``X2 = X**2``),
        or for groups of rows the sum of the groups' squared scatter norms
        (see ``ledoit_wolf_shrinkage_from_moments``).
    n_samples : int
        Number of rows.
    rows_per_group : int, default=1
        Rows per independent group; 1 is sklearn's estimator.

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
        rows_per_group,
    )
    return _shrink(emp_cov, shrinkage), shrinkage


@validate_params(
    {"scatter": ["array-like"], "n_samples": [Interval(Integral, 1, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
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


def shrinkage_coefficient(
    estimator, n_samples, n_features, trace, frobenius2, fourth, rows_per_group=1,
):
    """Shrinkage a streaming estimator applies, from scalar moments of its rows.

    Parameters
    ----------
    estimator : None or EmpiricalCovariance, ShrunkCovariance, LedoitWolf, OAS
    n_samples, n_features : int
    trace, frobenius2, fourth : float
        ``tr(S)``, ``||S||_F^2`` and the fourth-moment sum of the centred rows
        (see ``ledoit_wolf_shrinkage_from_moments``).
    rows_per_group : int, default=1
        Rows per independent group (Ledoit-Wolf only).

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
    check_covariance_estimator(estimator)
    if type(estimator) is ShrunkCovariance:
        return float(estimator.shrinkage)
    if type(estimator) is LedoitWolf:
        return ledoit_wolf_shrinkage_from_moments(
            n_samples, n_features, trace, frobenius2, fourth, rows_per_group,
        )
    if type(estimator) is OAS:
        return oas_shrinkage_from_moments(n_samples, n_features, trace, frobenius2)
    raise TypeError(f"{type(estimator).__name__} is not a streaming covariance estimator.")


@validate_params(
    {"scatter": ["array-like"], "n_samples": [Interval(Integral, 1, None, closed="left")], "shrinkage": [Interval(Real, 0, 1, closed="both")]},
    prefer_skip_nested_validation=True,
)
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
    if not (isinstance(shrinkage, Real) and 0.0 <= shrinkage <= 1.0):
        raise InvalidParameterError(f"shrinkage must be a float in [0, 1], got {shrinkage!r}.")
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


def needs_fourth_moments(estimator):
    """Whether the streaming ``estimator`` needs the fourth-moment sums of the statistics.

    Only Ledoit-Wolf does (its shrinkage estimates the variance of the
    sample covariance); the others need the scatter alone, so their fits can
    skip that work (``GroupedViewStatistics(fourth_moments=False)``).

    Parameters
    ----------
    estimator : object or None
        A covariance estimator.

    Returns
    -------
    needed : bool

    Examples
    --------
    >>> from sklearn.covariance import OAS, LedoitWolf
    >>> from skicr.metrics import needs_fourth_moments
    >>> needs_fourth_moments(None), needs_fourth_moments(OAS()), needs_fourth_moments(LedoitWolf())
    (False, False, True)
    """
    return type(estimator) is LedoitWolf


def _predictor_kind(estimator):
    """"classifier", "regressor" or "clusterer" for sklearn predictors, else None."""
    try:
        tags = get_tags(estimator)
    except (AttributeError, TypeError):  # not an sklearn estimator: no tags to read
        return None
    if tags.estimator_type in ("classifier", "regressor", "clusterer"):
        return tags.estimator_type
    return None


def check_covariance_estimator(estimator):
    """Refuse what cannot be a covariance estimator, and invalid parameters, before any work.

    Parameters
    ----------
    estimator : object or None
        The ``covariance_estimator`` argument.

    Returns
    -------
    estimator : object or None
        Unchanged.

    Raises
    ------
    sklearn.utils._param_validation.InvalidParameterError
        For a classifier, regressor, clusterer or transformer (anything whose
        fit is not ``fit(X)`` giving ``covariance_``), or for invalid parameters
        of sklearn's covariance estimators (e.g. ``ShrunkCovariance(shrinkage=2.0)``).
    """
    if estimator is None:
        return estimator
    name = type(estimator).__name__
    kind = _predictor_kind(estimator)
    if kind is not None or not hasattr(estimator, "fit") or isinstance(estimator, type):
        what = f"a {kind}" if kind else "not a fitted-object estimator with fit(X)"
        raise InvalidParameterError(
            f"covariance_estimator={name} is {what}, not a covariance estimator: it must "
            "implement fit(X) and set covariance_ (e.g. sklearn.covariance.LedoitWolf(), "
            "OAS(), ShrunkCovariance(), MinCovDet(), GraphicalLasso()), or be None."
        )
    constraints = getattr(estimator, "_parameter_constraints", None)
    if isinstance(estimator, EmpiricalCovariance) and constraints:
        # sklearn validates these only inside fit, which the streaming path never calls
        try:
            validate_parameter_constraints(
                constraints, estimator.get_params(deep=False), caller_name=name,
            )
        except InvalidParameterError as error:
            # phrased so that an enclosing validate_params does not rename the caller
            detail = re.sub(r"The ('\w+') parameter of \w+ must be", r"its \1 parameter must be", str(error))
            raise InvalidParameterError(f"Invalid covariance_estimator {name}: {detail}") from None
    return estimator


def _streaming_covariance(estimator, scatter, fourth, n_samples, rows_per_group=1):
    if needs_fourth_moments(estimator) and np.isnan(fourth):
        raise ValueError(
            "These statistics were accumulated without fourth moments "
            "(GroupedViewStatistics(fourth_moments=False), as a fit without Ledoit-Wolf "
            "keeps them), which LedoitWolf needs; accumulate (or fit) again with "
            "covariance_estimator=LedoitWolf()."
        )
    emp_cov = scatter / n_samples
    shrinkage = shrinkage_coefficient(
        estimator, n_samples, emp_cov.shape[0], np.trace(emp_cov), float(np.sum(emp_cov**2)), fourth,
        rows_per_group,
    )
    return (_shrink(emp_cov, shrinkage) if shrinkage else emp_cov), shrinkage


def check_estimated_covariance(covariance, n_features, name):
    """A covariance an estimator returned, refused unless finite, symmetric and PSD.

    Parameters
    ----------
    covariance : array-like
        The estimator's ``covariance_``.
    n_features : int
        Expected dimension.
    name : str
        The estimator's name, for the messages.

    Returns
    -------
    covariance : ndarray of shape (n_features, n_features)
        Exactly symmetrised float64 copy.
    """
    covariance = np.asarray(covariance, dtype=np.float64)
    if covariance.shape != (n_features, n_features):
        raise ValueError(
            f"covariance_estimator {name} returned covariance_ of shape {covariance.shape}, "
            f"expected {(n_features, n_features)}."
        )
    if not np.isfinite(covariance).all():
        raise ValueError(
            f"covariance_estimator {name} returned a covariance_ with NaN or infinite entries."
        )
    largest = float(np.max(np.abs(covariance))) if covariance.size else 0.0
    asymmetry = float(np.max(np.abs(covariance - covariance.T))) if covariance.size else 0.0
    if asymmetry > 1e-8 * largest:
        raise ValueError(
            f"covariance_estimator {name} returned a covariance_ that is not symmetric "
            f"(largest |C - C^T| = {asymmetry:.3g} against entries up to {largest:.3g})."
        )
    covariance = (covariance + covariance.T) / 2.0
    if largest > 0:
        eigenvalues = np.linalg.eigvalsh(covariance)
        if eigenvalues[0] < -1e-8 * max(eigenvalues[-1], 0.0) or eigenvalues[-1] <= 0:
            raise ValueError(
                f"covariance_estimator {name} returned a covariance_ that is not positive "
                f"semi-definite (eigenvalues from {eigenvalues[0]:.3g} to {eigenvalues[-1]:.3g})."
            )
    return covariance


def _fit_on_rows(estimator, rows):
    name = type(estimator).__name__
    fitted = clone(estimator)
    if "assume_centered" in fitted.get_params():
        fitted.set_params(assume_centered=True)
    try:
        fitted.fit(rows)
    except TypeError as error:
        raise TypeError(
            f"covariance_estimator {name}.fit(X) failed ({error}); a covariance estimator "
            "is fitted on rows alone, without y."
        ) from error
    covariance = getattr(fitted, "covariance_", None)
    if covariance is None:
        raise TypeError(
            f"covariance_estimator {name} has no covariance_ attribute "
            "after fit; pass an sklearn covariance estimator (EmpiricalCovariance, "
            "LedoitWolf, OAS, ShrunkCovariance, MinCovDet, GraphicalLasso, ...)."
        )
    covariance = check_estimated_covariance(covariance, rows.shape[1], name)
    return covariance, float(getattr(fitted, "shrinkage_", np.nan))


@validate_params(
    {"matrix": ["array-like"]},
    prefer_skip_nested_validation=True,
)
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
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or not np.isfinite(matrix).all():
        raise ValueError(f"project_psd needs a finite square matrix; got shape {matrix.shape}.")
    sym = (matrix + matrix.T) / 2.0
    eigenvalues, eigenvectors = np.linalg.eigh(sym)
    if eigenvalues.min() >= 0:
        return sym
    clipped = np.clip(eigenvalues, 0.0, None)
    return (eigenvectors * clipped) @ eigenvectors.T


def normalised_covariances(stats, covariance_estimator=None, bias_correction=False, views=None):
    """:func:`estimate_covariances` in units of ``stats.scale`` (representable at any magnitude).

    Parameters
    ----------
    stats : GroupedViewStatistics
    covariance_estimator : sklearn covariance estimator or None, default=None
    bias_correction : bool, default=False
    views : ndarray of shape (n_images, n_views, n_features) or None
        Original-unit views, required for non-streaming estimators.

    Returns
    -------
    covariance_s, covariance_xi : ndarray of shape (d, d)
        Divided by ``stats.scale**2``.
    info : dict
        ``shrinkage_s`` and ``shrinkage_xi`` (NaN where the estimator has none).
    """
    n_images = stats.n_images
    stats._check_enough()
    check_covariance_estimator(covariance_estimator)
    mean_scatter, mean_fourth, residual_scatter, residual_fourth = stats.normalised_moments()
    if is_streaming_estimator(covariance_estimator):
        cov_m, shrink_s = _streaming_covariance(covariance_estimator, mean_scatter, mean_fourth, n_images)
        cov_xi, shrink_xi = _streaming_covariance(
            covariance_estimator, residual_scatter, residual_fourth, stats.n_residual_rows,
            rows_per_group=stats.n_views - 1,
        )
    else:
        if views is None:
            raise ValueError(
                f"{type(covariance_estimator).__name__} needs the data itself (it is not one of "
                "EmpiricalCovariance, ShrunkCovariance, LedoitWolf, OAS, which stream); "
                "use fit rather than partial_fit."
            )
        scaled = np.asarray(views, dtype=np.float64) * (1.0 / stats.scale)
        means = scaled.mean(axis=1)
        cov_m, shrink_s = _fit_on_rows(covariance_estimator, means - means.mean(axis=0))
        # rows in each image's principal basis, so the fit cannot depend on view order
        cov_xi, shrink_xi = _fit_on_rows(covariance_estimator, principal_contrast_rows(scaled))
    # every route divides the mean rows by N: move to N - 1 degrees of freedom
    cov_m = cov_m * (n_images / (n_images - 1))
    cov_xi = (cov_xi + cov_xi.T) / 2.0
    if bias_correction:
        cov_s = project_psd(cov_m - cov_xi / stats.n_views)
    else:
        cov_s = (cov_m + cov_m.T) / 2.0
    return cov_s, cov_xi, {"shrinkage_s": shrink_s, "shrinkage_xi": shrink_xi}


@validate_params(
    {"stats": [GroupedViewStatistics], "covariance_estimator": "no_validation", "bias_correction": ["boolean"], "views": ["array-like", None]},
    prefer_skip_nested_validation=True,
)
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
        Ledoit-Wolf's fourth-moment term for Sigma_xi is taken per image (see
        ``ledoit_wolf_shrinkage_from_moments``), so it does not depend on
        the order of the views; the rows an other estimator is fitted on are
        each image's principal contrasts, for the same reason.
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
    cov_s, cov_xi, info = normalised_covariances(stats, covariance_estimator, bias_correction, views)
    with np.errstate(over="ignore", under="ignore"):
        factor = np.float64(stats.scale) ** 2
        return cov_s * factor, cov_xi * factor, info
