"""Generalized spectrum of (Sigma_s, Sigma_xi + tau I) and the ICR scalar.

``Sigma_s v = lambda (Sigma_xi + tau I) v``: the eigenvalues are invariant
signal-to-noise ratios along Fisher directions (LDA with each image its own
class). ``ICR = 1 / (1 + mean(lambda))`` lies in (0, 1]; lower is cleaner.

The mean eigenvalue equals ``tr((Sigma_xi + tau I)^-1 Sigma_s) / d``, computed
from one Cholesky factorisation and inverse, without an eigendecomposition.
"""

import warnings

from numbers import Integral, Real

import numpy as np
from scipy import linalg
from scipy.linalg import lapack
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ._statistics import data_scale

__all__ = [
    "resolve_tau",
    "regularized_residual",
    "generalized_spectrum",
    "icr_from_eigenvalues",
    "mean_invariant_snr",
    "heldout_eigenvalues",
    "eigenspace_groups",
    "eigenspace_snr",
    "SingularResidualWarning",
    "FeatureScaleWarning",
    "singular_ridge",
]

# relative size of the jitter added when Sigma_xi + tau I is numerically singular
_JITTER = 1e-10
# training eigenvalues closer than this (relative to the largest) are one eigenspace
EIGENSPACE_RTOL = 1e-8
# the jitter grows 100-fold per failed try: 12 tries reach 1e14 times the mean
# variance, far beyond any matrix that can still be factorised
_MAX_RIDGE_TRIES = 12


class SingularResidualWarning(UserWarning):
    """Sigma_xi + tau I is singular; a tiny ridge was added to keep ICR finite.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from skicr.metrics import SingularResidualWarning, icr_score
    >>> rng = np.random.default_rng(0)
    >>> views = np.repeat(rng.normal(size=(50, 1, 4)), 3, axis=1)  # identical views
    >>> views[:, :, 0] += 0.1 * rng.normal(size=(50, 3))  # one feature varies
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     icr = icr_score(views, tau=0)
    >>> any(issubclass(w.category, SingularResidualWarning) for w in caught)
    True
    >>> bool(np.isfinite(icr))
    True
    """


class FeatureScaleWarning(UserWarning):
    """Features so small or large that covariances in their own units lose precision.

    ICR, the spectrum and the Fisher directions are computed on features
    normalised by a power of two and are unaffected; only quantities reported
    in the features' own units (covariances, absolute ridge) are.
    """


@validate_params(
    {"covariance_xi": ["array-like"], "tau": [Interval(Real, 0, None, closed="left")], "tau_mode": [StrOptions({"relative", "absolute"})]},
    prefer_skip_nested_validation=True,
)
def resolve_tau(covariance_xi, tau, tau_mode="relative"):
    """Return the absolute ridge ``tau`` added to Sigma_xi.

    Parameters
    ----------
    covariance_xi : ndarray of shape (d, d)
        Residual covariance.
    tau : float
        Ridge, >= 0. 0 means no regularisation.
    tau_mode : {"relative", "absolute"}, default="relative"
        "relative": ``tau * tr(Sigma_xi) / d`` (a fraction of the mean residual
        variance, so the ridge follows the scale of the features and ICR stays
        invariant to rescaling them). "absolute": ``tau`` as given.

    Returns
    -------
    tau_abs : float

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import resolve_tau
    >>> covariance_xi = np.diag([1.0, 2.0, 3.0])
    >>> resolve_tau(covariance_xi, 1e-3)             # 1e-3 * tr / d
    0.002
    >>> resolve_tau(covariance_xi, 0.5, "absolute")
    0.5
    """
    return tau_from_trace(np.trace(covariance_xi), covariance_xi.shape[0], tau, tau_mode)


@validate_params(
    {"trace_xi": [Real], "n_features": [Interval(Integral, 1, None, closed="left")], "tau": [Interval(Real, 0, None, closed="left")], "tau_mode": [StrOptions({"relative", "absolute"})]},
    prefer_skip_nested_validation=True,
)
def tau_from_trace(trace_xi, n_features, tau, tau_mode="relative"):
    """:func:`resolve_tau` from ``tr(Sigma_xi)`` alone (for the dual form).

    Parameters
    ----------
    trace_xi : float
        ``tr(Sigma_xi)``.
    n_features : int
        Dimension ``d``.
    tau : float
        Ridge, >= 0.
    tau_mode : {"relative", "absolute"}, default="relative"

    Returns
    -------
    tau_abs : float

    Examples
    --------
    >>> from skicr.metrics import tau_from_trace
    >>> tau_from_trace(6.0, 3, 1e-3)                  # 1e-3 * 6 / 3
    0.002
    """
    if tau < 0 or not np.isfinite(tau):
        raise ValueError(f"tau must be a finite number >= 0, got {tau!r}.")
    if tau_mode == "relative":
        return float(tau * trace_xi / n_features)
    if tau_mode == "absolute":
        return float(tau)
    raise ValueError(f"tau_mode must be 'relative' or 'absolute', got {tau_mode!r}.")


def _check_covariance_pair(covariance_s, covariance_xi):
    covariance_s = np.asarray(covariance_s, dtype=np.float64)
    covariance_xi = np.asarray(covariance_xi, dtype=np.float64)
    if (
        covariance_xi.ndim != 2 or covariance_xi.shape[0] != covariance_xi.shape[1]
        or covariance_s.shape != covariance_xi.shape or covariance_xi.shape[0] == 0
    ):
        raise ValueError(
            "Sigma_s and Sigma_xi must be square matrices of the same non-zero size; got "
            f"shapes {covariance_s.shape} and {covariance_xi.shape}."
        )
    return covariance_s, covariance_xi


def _well_conditioned(factor):
    # Cholesky can succeed on a matrix that is singular up to round-off;
    # its diagonal squared bounds the eigenvalues' spread
    diag = np.abs(np.diag(factor)) ** 2
    return diag.min() > factor.shape[0] * np.finfo(np.float64).eps * diag.max()


def _cholesky_upper(matrix):
    factor, info = lapack.dpotrf(matrix, lower=0, clean=1)
    return factor, info


def singular_ridge(trace_xi, trace_s, n_features, tau_abs):
    """The ridge added (with a warning) when Sigma_xi + tau I is singular.

    ``1e-10`` times the mean residual variance, or times the mean invariant
    variance when the residual is zero up to round-off; an error when both
    are zero (all features constant, ICR undefined).

    Parameters
    ----------
    trace_xi, trace_s : float
        ``tr(Sigma_xi)`` and ``tr(Sigma_s)``.
    n_features : int
    tau_abs : float
        The ridge that was not enough (for the message).

    Returns
    -------
    ridge : float

    Examples
    --------
    >>> import warnings
    >>> from skicr.metrics import SingularResidualWarning, singular_ridge
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     ridge = singular_ridge(trace_xi=4.0, trace_s=1.0, n_features=4, tau_abs=0.0)
    >>> float(ridge)                     # 1e-10 x the mean residual variance
    1e-10
    >>> caught[0].category is SingularResidualWarning
    True
    """
    eps = np.finfo(np.float64).eps
    scale_xi, scale_s = trace_xi / n_features, trace_s / n_features
    # a residual at round-off level of the signal counts as no residual at all
    scale = scale_xi if scale_xi > eps * scale_s else scale_s
    if not np.isfinite(scale):
        raise ValueError(
            f"tr(Sigma_xi)={trace_xi!r}, tr(Sigma_s)={trace_s!r} are not finite; ICR is undefined."
        )
    if not scale > 0:
        raise ValueError(
            "All features are constant across views and images (Sigma_s = Sigma_xi = 0); "
            "ICR is undefined."
        )
    ridge = _JITTER * scale
    warnings.warn(
        f"Sigma_xi + tau I is singular (tau={tau_abs:.3g}, d={n_features}); this happens with "
        "tau=0 and constant features or more features than residual degrees of freedom "
        f"N(V-1). Added a ridge of {ridge:.3g} to keep ICR finite; prefer tau > 0 or a "
        "shrinkage covariance estimator.",
        SingularResidualWarning,
        stacklevel=4,
    )
    return ridge


@validate_params(
    {"covariance_s": ["array-like"], "covariance_xi": ["array-like"], "tau_abs": [Interval(Real, 0, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def regularized_residual(covariance_s, covariance_xi, tau_abs):
    """``Sigma_xi + tau I``, made positive definite if it is not.

    When Sigma_xi + tau I is singular (tau = 0 with rank-deficient Sigma_xi:
    constant features, or d > N (V - 1)), a ridge of ``1e-10`` times the mean
    residual variance (or of the invariant variance if the residual is zero)
    is added and a :class:`SingularResidualWarning` is raised: the ICR stays
    finite, never NaN.

    Parameters
    ----------
    covariance_s : ndarray of shape (d, d)
    covariance_xi : ndarray of shape (d, d)
    tau_abs : float
        Absolute ridge.

    Returns
    -------
    b : ndarray of shape (d, d)
        Positive-definite matrix.
    cholesky : ndarray of shape (d, d)
        Upper Cholesky factor of ``b``.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import regularized_residual
    >>> covariance_s, covariance_xi = np.eye(3), np.diag([1.0, 1.0, 0.0])  # singular
    >>> b, cholesky = regularized_residual(covariance_s, covariance_xi, tau_abs=0.5)
    >>> np.diag(b)
    array([1.5, 1.5, 0.5])
    >>> bool(np.allclose(cholesky.T @ cholesky, b))
    True
    """
    covariance_s, covariance_xi = _check_covariance_pair(covariance_s, covariance_xi)
    d = covariance_xi.shape[0]
    if not (np.isfinite(covariance_xi).all() and np.isfinite(covariance_s).all()):
        raise ValueError(
            "Sigma_s or Sigma_xi holds NaN or infinite values; they cannot be factorised "
            "(features beyond float64's range, or a covariance estimator that failed)."
        )
    if not np.isfinite(tau_abs) or tau_abs < 0:
        raise ValueError(f"The ridge tau must be a finite number >= 0, got {tau_abs!r}.")
    b = covariance_xi.copy()
    b.flat[:: d + 1] += tau_abs
    factor, info = _cholesky_upper(b)
    eps = np.finfo(np.float64).eps
    trace_xi, trace_s = np.trace(covariance_xi), np.trace(covariance_s)
    negligible = np.trace(b) <= d * eps * trace_s
    if info == 0 and _well_conditioned(factor) and not negligible:
        return b, factor
    ridge = singular_ridge(trace_xi, trace_s, d, tau_abs)
    for _ in range(_MAX_RIDGE_TRIES):
        b = covariance_xi.copy()
        b.flat[:: d + 1] += tau_abs + ridge
        factor, info = _cholesky_upper(b)
        if info == 0 and _well_conditioned(factor):
            return b, factor
        ridge *= 100.0
    raise ValueError(
        f"Sigma_xi + tau I (d={d}) could not be made positive definite: a ridge up to "
        f"{ridge / 100.0:.3g} (against a mean residual variance of {trace_xi / d:.3g}) did "
        "not give a well-conditioned Cholesky factor. The covariances are not valid "
        "(check the covariance estimator) or their entries span more than float64 can hold."
    )


@validate_params(
    {"covariance_s": ["array-like"], "covariance_xi": ["array-like"], "tau_abs": [Interval(Real, 0, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def generalized_spectrum(covariance_s, covariance_xi, tau_abs=0.0):
    """All generalized eigenvalues and Fisher directions, descending.

    Parameters
    ----------
    covariance_s : ndarray of shape (d, d)
    covariance_xi : ndarray of shape (d, d)
    tau_abs : float, default=0.0
        Absolute ridge added to Sigma_xi.

    Returns
    -------
    eigenvalues : ndarray of shape (d,)
        ``lambda_1 >= ... >= lambda_d >= 0`` (tiny negative round-off clipped).
    directions : ndarray of shape (d, d)
        Fisher directions, one per row, normalised so that
        ``v^T (Sigma_xi + tau I) v = 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.linalg import eigh
    >>> from skicr.metrics import generalized_spectrum
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(2, 50, 5))
    >>> covariance_s, covariance_xi = a.T @ a / 50, b.T @ b / 50
    >>> eigenvalues, directions = generalized_spectrum(covariance_s, covariance_xi)
    >>> reference = eigh(covariance_s, covariance_xi, eigvals_only=True)[::-1]
    >>> bool(np.allclose(eigenvalues, reference))
    True
    >>> bool(np.allclose(directions @ covariance_xi @ directions.T, np.eye(5)))
    True
    """
    covariance_s, covariance_xi = _check_covariance_pair(covariance_s, covariance_xi)
    b, _ = regularized_residual(covariance_s, covariance_xi, tau_abs)
    eigenvalues, eigenvectors = linalg.eigh(covariance_s, b, check_finite=False)
    order = np.argsort(eigenvalues)[::-1]
    return np.clip(eigenvalues[order], 0.0, None), eigenvectors[:, order].T


@validate_params(
    {"eigenvalues": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def icr_from_eigenvalues(eigenvalues):
    """``ICR = 1 / (1 + mean(lambda))``.

    Parameters
    ----------
    eigenvalues : array-like of shape (d,)
        Generalized eigenvalues (invariant SNRs).

    Returns
    -------
    icr : float
        In (0, 1]; lower is cleaner.

    Examples
    --------
    >>> from skicr.metrics import icr_from_eigenvalues
    >>> icr_from_eigenvalues([3.0, 1.0])     # 1 / (1 + 2)
    0.3333333333333333
    """
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    if eigenvalues.size == 0 or not np.isfinite(eigenvalues).all() or np.any(eigenvalues < 0):
        raise ValueError(
            "ICR needs a non-empty spectrum of finite, non-negative invariant SNRs; got "
            f"{eigenvalues!r}."
        )
    return float(1.0 / (1.0 + np.mean(eigenvalues)))


@validate_params(
    {"covariance_s": ["array-like"], "covariance_xi": ["array-like"], "tau_abs": [Interval(Real, 0, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def mean_invariant_snr(covariance_s, covariance_xi, tau_abs=0.0):
    """``mean(lambda) = tr((Sigma_xi + tau I)^-1 Sigma_s) / d`` without eigendecomposition.

    One Cholesky factorisation and inverse (LAPACK ``potrf``/``potri``), then
    an elementwise product: about ``d^3`` flops against ``~9 d^3`` for ``eigh``.

    Parameters
    ----------
    covariance_s : ndarray of shape (d, d)
    covariance_xi : ndarray of shape (d, d)
    tau_abs : float, default=0.0
        Absolute ridge added to Sigma_xi.

    Returns
    -------
    mean_snr : float

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import generalized_spectrum, mean_invariant_snr
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(2, 50, 5))
    >>> covariance_s, covariance_xi = a.T @ a / 50, b.T @ b / 50
    >>> eigenvalues, _ = generalized_spectrum(covariance_s, covariance_xi, tau_abs=0.1)
    >>> snr = mean_invariant_snr(covariance_s, covariance_xi, tau_abs=0.1)
    >>> bool(np.isclose(snr, eigenvalues.mean()))
    True
    """
    covariance_s, covariance_xi = _check_covariance_pair(covariance_s, covariance_xi)
    _, factor = regularized_residual(covariance_s, covariance_xi, tau_abs)
    inverse, info = lapack.dpotri(factor, lower=0)
    if info != 0:  # pragma: no cover - potrf succeeded, so potri cannot fail
        raise np.linalg.LinAlgError(f"potri failed with info={info}")
    # potri fills the upper triangle only: sum_ij inv_ij A_ij over a symmetric
    # pair counts the strict upper triangle twice
    upper = np.triu(inverse)
    trace = 2.0 * np.vdot(upper, covariance_s) - np.dot(np.diag(upper), np.diag(covariance_s))
    return max(float(trace) / covariance_s.shape[0], 0.0)


def eigenspace_groups(eigenvalues, rtol=EIGENSPACE_RTOL):
    """Start and stop of each run of (numerically) equal eigenvalues, sorted descending.

    Parameters
    ----------
    eigenvalues : ndarray of shape (k,)
        Descending.
    rtol : float, default=1e-8
        Neighbours closer than ``rtol`` times the largest eigenvalue are one
        eigenspace (runs chain: a cluster of close eigenvalues is one group).

    Returns
    -------
    groups : list of (start, stop)

    Examples
    --------
    >>> from skicr.metrics import eigenspace_groups
    >>> eigenvalues = [3.0, 1.0, 1.0 - 1e-12, 0.0, 0.0, 0.0]
    >>> [(int(a), int(b)) for a, b in eigenspace_groups(eigenvalues)]
    [(0, 1), (1, 3), (3, 6)]
    """
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    if len(eigenvalues) == 0:
        return []
    tol = rtol * max(float(eigenvalues[0]), np.finfo(np.float64).tiny)
    cuts = np.flatnonzero(-np.diff(eigenvalues) > tol) + 1
    bounds = [0, *cuts.tolist(), len(eigenvalues)]
    return list(zip(bounds[:-1], bounds[1:]))


def _snr(signal, noise):
    """``signal / noise`` where a held-out ``noise`` of (numerically) zero means no residual.

    Such a direction is perfectly invariant: its SNR is huge rather than
    undefined; directions with neither signal nor noise carry nothing.
    """
    signal, noise = np.asarray(signal, dtype=np.float64), np.asarray(noise, dtype=np.float64)
    tiny = np.finfo(np.float64).tiny
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(noise > tiny, signal / np.maximum(noise, tiny),
                         np.where(signal > tiny, 1.0 / _JITTER, 0.0))
    return np.clip(ratio, 0.0, None)


def eigenspace_snr(eigenvalues, signal, noise):
    """Held-out SNR of each training direction, pooled over its training eigenspace.

    Every eigenspace ``E`` of the training problem (a run of equal
    ``eigenvalues``, :func:`eigenspace_groups`) gets one value, the ratio of
    traces ``tr(W_E^T A W_E) / tr(W_E^T B W_E)`` of the held-out ``A``
    (``Sigma_s``) and ``B`` (``Sigma_xi + tau I``) along a basis ``W_E`` of
    ``E`` normalised by the training ``Sigma_xi + tau I``, i.e. the sum of
    the entries' ``signal`` over the sum of their ``noise``. Any other
    normalised basis of ``E`` is ``W_E O`` with ``O`` orthogonal and gives the
    same traces, so the value depends on no choice the eigensolver makes
    inside a degenerate eigenspace. A simple eigenvalue gives the Rayleigh
    quotient ``w^T A w / w^T B w`` of its direction.

    The one home of this rule for the primal (:func:`heldout_eigenvalues`)
    and the dual (:func:`~skicr.metrics.dual_heldout_icr`) held-out scores.

    Parameters
    ----------
    eigenvalues : array-like of shape (k,)
        Training eigenvalues, descending.
    signal, noise : array-like of shape (k,)
        Held-out ``w^T A w`` and ``w^T B w`` of each entry (an entry may stand
        for several directions of one eigenspace: then the sums over them).

    Returns
    -------
    snr : ndarray of shape (k,)
        Per entry, its eigenspace's pooled SNR (non-negative).

    Examples
    --------
    >>> from skicr.metrics import eigenspace_snr
    >>> eigenvalues = [2.0, 0.0, 0.0]          # a simple eigenvalue, then a 2-d eigenspace
    >>> eigenspace_snr(eigenvalues, [1.0, 0.2, 0.6], [1.0, 1.0, 3.0]).tolist()
    [1.0, 0.2, 0.2]
    """
    signal, noise = np.asarray(signal, dtype=np.float64), np.asarray(noise, dtype=np.float64)
    snr = np.empty(signal.shape)
    for start, stop in eigenspace_groups(eigenvalues):
        snr[start:stop] = _snr(np.sum(signal[start:stop]), np.sum(noise[start:stop]))
    return snr


def _check_training_eigenvalues(eigenvalues, k):
    """The training eigenvalues of ``k`` directions: finite, descending (or None)."""
    if eigenvalues is None:
        return None
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    if eigenvalues.shape != (k,) or not np.all(np.isfinite(eigenvalues)):
        raise ValueError(
            f"eigenvalues must be {k} finite training eigenvalues, one per direction; got shape "
            f"{eigenvalues.shape}."
        )
    if np.any(np.diff(eigenvalues) > 0):
        raise ValueError("eigenvalues must be sorted descending, in the order of the directions.")
    return eigenvalues


def _normalised_directions(directions, eigenvalues=None):
    """Directions rescaled for a representable held-out SNR, without changing it.

    The SNR along a direction does not depend on its length, so each row is
    made unit; with the training ``eigenvalues`` the rows of one eigenspace
    share one factor instead (its largest norm), which keeps their relative
    normalisation (the training ``Sigma_xi + tau I``) that :func:`eigenspace_snr`
    relies on.
    """
    scaled = directions / data_scale(directions)
    norms = np.linalg.norm(scaled, axis=1)
    if eigenvalues is not None:
        for start, stop in eigenspace_groups(eigenvalues):
            norms[start:stop] = norms[start:stop].max()
    norms = norms[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, scaled / norms, 0.0)


@validate_params(
    {"directions": ["array-like"], "covariance_s": ["array-like"], "covariance_xi": ["array-like"],
     "tau_abs": [Interval(Real, 0, None, closed="left")], "eigenvalues": ["array-like", None]},
    prefer_skip_nested_validation=True,
)
def heldout_eigenvalues(directions, covariance_s, covariance_xi, tau_abs=0.0, *, eigenvalues=None):
    """Invariant SNRs of new data along fixed Fisher directions.

    ``lambda_i = w_i^T Sigma_s w_i / w_i^T (Sigma_xi + tau I) w_i``. With the
    directions fitted on the same data this gives back its eigenvalues.
    With the training ``eigenvalues``, the directions of a degenerate
    training eigenspace (a repeated eigenvalue, e.g. the eigenvalue 0 of
    the ``d - N + 1`` directions without invariant variance when the training
    data has ``N <= d`` images) all get that eigenspace's pooled ratio of
    traces (:func:`eigenspace_snr`), which, unlike their separate quotients,
    does not depend on the basis the eigensolver happened to pick inside it.

    Parameters
    ----------
    directions : ndarray of shape (k, d)
        Fisher directions, one per row (from the training data).
    covariance_s : ndarray of shape (d, d)
        Sigma_s of the held-out data.
    covariance_xi : ndarray of shape (d, d)
        Sigma_xi of the held-out data.
    tau_abs : float, default=0.0
    eigenvalues : array-like of shape (k,) or None, default=None
        The training eigenvalues of ``directions`` (descending, in their
        order). Then the rows of each eigenspace must keep the training
        normalisation (``v^T (Sigma_xi + tau I) v = 1`` or one common multiple
        of it), as :func:`generalized_spectrum` returns them, and every
        eigenspace must be whole (pass all directions of an eigenspace, e.g.
        all ``d``, and take the first ``k`` values afterwards). None scores each
        direction on its own.

    Returns
    -------
    eigenvalues : ndarray of shape (k,)

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import generalized_spectrum, heldout_eigenvalues
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(2, 50, 5))
    >>> covariance_s, covariance_xi = a.T @ a / 50, b.T @ b / 50
    >>> eigenvalues, directions = generalized_spectrum(covariance_s, covariance_xi)
    >>> # along its own Fisher directions, the same data gives back its eigenvalues
    >>> again = heldout_eigenvalues(directions, covariance_s, covariance_xi)
    >>> bool(np.allclose(again, eigenvalues))
    True
    """
    covariance_s, covariance_xi = _check_covariance_pair(covariance_s, covariance_xi)
    directions = np.asarray(directions, dtype=np.float64)
    d = covariance_xi.shape[0]
    if directions.ndim != 2 or directions.shape[1] != d:
        raise ValueError(f"directions of shape {directions.shape} do not match {d} x {d} covariances.")
    eigenvalues = _check_training_eigenvalues(eigenvalues, directions.shape[0])
    b = covariance_xi.copy()
    b.flat[:: d + 1] += tau_abs
    signal = np.einsum("ij,ij->i", directions @ covariance_s, directions)
    noise = np.einsum("ij,ij->i", directions @ b, directions)
    if eigenvalues is None:
        return _snr(signal, noise)
    return eigenspace_snr(eigenvalues, signal, noise)
