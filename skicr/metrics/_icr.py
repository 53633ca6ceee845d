"""From grouped views to ICR in one call, and the shared fitting routine."""

import contextlib
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions, validate_params

from .._utils.interrupts import interruptible_if
from ._covariance import (
    check_covariance_estimator,
    is_streaming_estimator,
    needs_fourth_moments,
    normalised_covariances,
)
from ._dual import dual_mean_invariant_snr
from ._spectrum import (
    _check_training_eigenvalues,
    _normalised_directions,
    generalized_spectrum,
    heldout_eigenvalues,
    icr_from_eigenvalues,
    mean_invariant_snr,
    resolve_tau,
)
from ._statistics import GroupedViewStatistics
from .._utils.threads import one_blas_thread
from ._validation import check_grouped_views

__all__ = ["accumulate", "Decomposition", "decompose", "icr_score", "heldout_icr",
           "heldout_icr_from_statistics"]

# the largest ridge (in units of the data scale squared) an absolute tau is
# clipped to: beyond it every invariant SNR is zero to float64 precision
_LARGEST_RIDGE = 1e300

# parameter constraints shared by every function that fits covariances
_COVARIANCE_PARAMETERS = {
    "tau": [Interval(Real, 0, None, closed="left")],
    "tau_mode": [StrOptions({"relative", "absolute"})],
    "covariance_estimator": [HasMethods(["fit"]), None],
    "bias_correction": ["boolean"],
}


# d x d factorisations (Cholesky, eigh) of matrices this small run fastest on
# one BLAS thread: extra threads cost more in start-up and, on a machine that
# is busy, in waiting for a core than they save (a 512 x 512 Cholesky took
# 0.26 s with two threads under load, milliseconds with one). Larger matrices
# keep every core BLAS was given.
_SINGLE_THREAD_FEATURES = (64, 1024)


def _spectrum_threads(n_features):
    """Context limiting BLAS to one thread for small d x d factorisations."""
    low, high = _SINGLE_THREAD_FEATURES
    if low <= n_features <= high:
        return one_blas_thread()
    return contextlib.nullcontext()


def _normalised_tau(covariance_xi, tau, tau_mode, scale):
    """The ridge in units of ``scale**2`` for covariances in those units."""
    if tau_mode == "absolute":
        resolve_tau(covariance_xi, tau, tau_mode)  # validates tau
        with np.errstate(over="ignore", under="ignore"):
            return float(min(tau / np.float64(scale) ** 2, _LARGEST_RIDGE))
    return resolve_tau(covariance_xi, tau, tau_mode)


@validate_params(
    {"views": ["array-like"], "stats": [GroupedViewStatistics, None]},
    prefer_skip_nested_validation=True,
)
def accumulate(views, stats=None):
    """Add grouped views to (new) statistics (memory bounded: the update works in blocks).

    Parameters
    ----------
    views : ndarray of shape (n_images, n_views, n_features)
        Validated views (any float dtype; promoted to float64 per chunk).
    stats : GroupedViewStatistics or None
        Statistics to add to; new ones when None.

    Returns
    -------
    stats : GroupedViewStatistics

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import accumulate
    >>> rng = np.random.default_rng(0)
    >>> views = rng.normal(size=(100, 4, 8))
    >>> stats = accumulate(views[:50])
    >>> stats = accumulate(views[50:], stats)      # add a second chunk
    >>> stats.n_images, stats.residual_scatter.shape
    (100, (8, 8))
    """
    views = np.asarray(views)
    if views.ndim != 3:
        raise ValueError(
            f"accumulate expects 3-D views (n_images, n_views, n_features), got shape {views.shape}."
        )
    if stats is None:
        stats = GroupedViewStatistics()
    # the update bounds its own temporaries (blocks of images, or chunks on the scaled route)
    return stats.update(views)


@dataclass
class Decomposition:
    """Result of the invariant-residual decomposition of grouped views.

    Attributes
    ----------
    covariance_s, covariance_xi : ndarray of shape (d, d)
        Invariant and residual covariances.
    tau : float
        Absolute ridge added to Sigma_xi.
    eigenvalues : ndarray of shape (d,) or None
        Generalized eigenvalues, descending (None on the trace-only path).
    directions : ndarray of shape (d, d) or None
        Fisher directions, one per row (None on the trace-only path).
    mean_snr : float
        Mean invariant SNR, ``mean(eigenvalues)``.
    icr : float
        ``1 / (1 + mean_snr)``.
    shrinkage_s, shrinkage_xi : float
        Shrinkage coefficients where the estimator has one, else NaN or 0.
    trace_s, trace_xi : float
        ``tr(Sigma_s)`` and ``tr(Sigma_xi)`` (without the ridge): where the
        representation's variance goes, invariant part or residual.
    expansion : float
        ``trace_s + trace_xi``.
    invariant_share : float
        ``trace_s / expansion``; 0 when both traces are 0.
    scale : float
        Power of two the features were divided by before any moment was
        formed; the spectrum and ICR are computed at that scale and the
        covariances, ``tau`` and directions converted back (covariances of
        features beyond about ``1e154`` overflow to inf, those under about
        ``1e-146`` lose precision; ICR and the spectrum never do).
    scaled_traces : tuple of float or None
        ``(tr Sigma_s, tr Sigma_xi)`` in units of ``scale**2``, where they
        neither overflow nor underflow; the invariant share is read from them.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import accumulate, decompose
    >>> rng = np.random.default_rng(0)
    >>> views = rng.normal(size=(200, 1, 8)) + 0.5 * rng.normal(size=(200, 4, 8))
    >>> result = decompose(accumulate(views))
    >>> result.covariance_s.shape, result.eigenvalues.shape
    ((8, 8), (8,))
    >>> bool(np.isclose(result.icr, 1 / (1 + result.eigenvalues.mean())))
    True
    """

    covariance_s: np.ndarray
    covariance_xi: np.ndarray
    tau: float
    eigenvalues: np.ndarray
    directions: np.ndarray
    mean_snr: float
    icr: float
    shrinkage_s: float
    shrinkage_xi: float
    scale: float = 1.0
    scaled_traces: tuple = None

    # the traces every consumer reports (decomposer, monitor), computed in one place
    @property
    def trace_s(self):
        """``tr(Sigma_s)``, the invariant part's total variance (float)."""
        return float(np.trace(self.covariance_s))

    @property
    def trace_xi(self):
        """``tr(Sigma_xi)``, the residual's total variance, without the ridge (float)."""
        return float(np.trace(self.covariance_xi))

    @property
    def expansion(self):
        """``trace_s + trace_xi``, the representation's total variance (float)."""
        return self.trace_s + self.trace_xi

    @property
    def invariant_share(self):
        """``trace_s / expansion``, the invariant part's share (float; 0 when both traces are 0).

        Scale-free, so read from the normalised traces: exact at magnitudes
        where the traces in the features' units over- or underflow.
        """
        trace_s, trace_xi = self.scaled_traces or (self.trace_s, self.trace_xi)
        expansion = trace_s + trace_xi
        return trace_s / expansion if expansion > 0 else 0.0


@validate_params(
    {"stats": [GroupedViewStatistics], **_COVARIANCE_PARAMETERS, "views": ["array-like", None],
     "spectrum": ["boolean"]},
    prefer_skip_nested_validation=True,
)
def decompose(
    stats,
    *,
    tau=1e-3,
    tau_mode="relative",
    covariance_estimator=None,
    bias_correction=False,
    views=None,
    spectrum=True,
):
    """Covariances, spectrum and ICR from statistics (the numerical core).

    Parameters
    ----------
    stats : GroupedViewStatistics
    tau : float, default=1e-3
        Ridge on Sigma_xi (0 means none); see :func:`resolve_tau`.
    tau_mode : {"relative", "absolute"}, default="relative"
    covariance_estimator : sklearn covariance estimator or None, default=None
    bias_correction : bool, default=False
    views : ndarray or None
        The views, needed only for non-streaming covariance estimators.
    spectrum : bool, default=True
        Compute eigenvalues and directions; False takes the trace-identity
        path (ICR only, no eigendecomposition).

    Returns
    -------
    result : Decomposition

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import accumulate, decompose, icr_score
    >>> rng = np.random.default_rng(0)
    >>> views = rng.normal(size=(200, 1, 8)) + 0.5 * rng.normal(size=(200, 4, 8))
    >>> stats = accumulate(views)
    >>> full = decompose(stats)                    # spectrum and Fisher directions
    >>> fast = decompose(stats, spectrum=False)    # trace identity only
    >>> fast.eigenvalues is None
    True
    >>> bool(np.isclose(full.icr, fast.icr))
    True
    >>> bool(np.isclose(full.icr, icr_score(views)))
    True
    """
    cov_s, cov_xi, info = normalised_covariances(
        stats, covariance_estimator, bias_correction=bias_correction, views=views,
    )
    scale = stats.scale
    tau_n = _normalised_tau(cov_xi, tau, tau_mode, scale)

    def solve():
        if spectrum:
            return generalized_spectrum(cov_s, cov_xi, tau_n), None
        return (None, None), mean_invariant_snr(cov_s, cov_xi, tau_n)

    with _spectrum_threads(cov_s.shape[0]):
        # one LAPACK call of order d: minutes for wide layers, so Ctrl-C is answered
        # from a waiting main thread (the call is pure: nothing is half-updated)
        (eigenvalues, directions), mean_snr = interruptible_if(cov_s.shape[0], solve)
    if spectrum:
        mean_snr = float(np.mean(eigenvalues))
        with np.errstate(over="ignore", under="ignore"):
            directions = directions / scale
    with np.errstate(over="ignore", under="ignore"):
        factor = np.float64(scale) ** 2
        covariance_s, covariance_xi, tau_abs = cov_s * factor, cov_xi * factor, tau_n * factor
    return Decomposition(
        covariance_s=covariance_s,
        covariance_xi=covariance_xi,
        tau=float(tau_abs),
        eigenvalues=eigenvalues,
        directions=directions,
        mean_snr=mean_snr,
        icr=icr_from_eigenvalues([mean_snr]),
        shrinkage_s=info["shrinkage_s"],
        shrinkage_xi=info["shrinkage_xi"],
        scale=scale,
        scaled_traces=(float(np.trace(cov_s)), float(np.trace(cov_xi))),
    )


@validate_params(
    {"directions": ["array-like"], "views": ["array-like"], "eigenvalues": ["array-like", None],
     **_COVARIANCE_PARAMETERS},
    prefer_skip_nested_validation=True,
)
def heldout_icr(
    directions,
    views,
    *,
    eigenvalues=None,
    tau=1e-3,
    tau_mode="relative",
    covariance_estimator=None,
    bias_correction=False,
):
    """ICR of new views along fixed (training) Fisher directions.

    ``1 / (1 + mean(lambda'))`` with ``lambda'`` the held-out SNRs of
    :func:`heldout_eigenvalues`. Give the training ``eigenvalues`` whenever
    the training spectrum may be degenerate (fewer training images than
    features, a repeated eigenvalue): each degenerate eigenspace is then
    scored by its ratio of traces (:func:`eigenspace_snr`), so the value does
    not depend on the basis the eigensolver picked inside it (which changes
    with BLAS threads and round-off); on a simple spectrum it is the
    direction-by-direction value (:ref:`heldout-icr`).

    Parameters
    ----------
    directions : ndarray of shape (k, d)
        Fisher directions, one per row.
    views : ndarray of shape (n_images, n_views, d)
        Held-out views (validated).
    eigenvalues : array-like of shape (k,) or None, default=None
        The training eigenvalues of ``directions``, descending, with the
        directions as :func:`decompose` returns them (normalised by the
        training ``Sigma_xi + tau I``) and every eigenspace whole (e.g. all
        ``d`` directions). None scores each direction on its own.
    tau : float, default=1e-3
        Ridge on the held-out Sigma_xi, as in :func:`decompose`.
    tau_mode : {"relative", "absolute"}, default="relative"
        Rule for ``tau`` applied to the held-out Sigma_xi.
    covariance_estimator : sklearn covariance estimator or None, default=None
        Estimator for the held-out covariances. Scorers leave it None so that
        every candidate is measured on the same plain covariances of the
        held-out data (see :meth:`skicr.InvariantResidualDecomposer.score`).
    bias_correction : bool, default=False
        As in :func:`decompose`.

    Returns
    -------
    icr : float

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import accumulate, decompose, heldout_icr
    >>> rng = np.random.default_rng(0)
    >>> views = rng.normal(size=(400, 1, 8)) + 0.5 * rng.normal(size=(400, 4, 8))
    >>> train, test = views[:300], views[300:]
    >>> directions = decompose(accumulate(train)).directions
    >>> icr = heldout_icr(directions, test)
    >>> bool(0 < icr < 1)
    True

    Fewer training images than features: the eigenvalue 0 is degenerate, and
    the training eigenvalues make the score basis-independent.

    >>> fit = decompose(accumulate(views[:6]))
    >>> icr = heldout_icr(fit.directions, test, eigenvalues=fit.eigenvalues)
    >>> bool(0 < icr < 1)
    True
    """
    directions = np.asarray(directions, dtype=np.float64)
    views = check_grouped_views(views, min_images=2)
    if directions.ndim != 2 or directions.shape[1] != views.shape[2]:
        raise ValueError(
            f"directions of shape {directions.shape} do not match views with "
            f"{views.shape[2]} features."
        )
    stats = accumulate(views, GroupedViewStatistics(fourth_moments=needs_fourth_moments(covariance_estimator)))
    needs_rows = not is_streaming_estimator(covariance_estimator)
    return _heldout_icr_of_statistics(
        directions, stats, eigenvalues=eigenvalues, tau=tau, tau_mode=tau_mode,
        covariance_estimator=covariance_estimator, bias_correction=bias_correction,
        views=views if needs_rows else None,
    )


def _heldout_icr_of_statistics(directions, stats, *, eigenvalues, tau, tau_mode, covariance_estimator,
                               bias_correction, views=None):
    """The held-out ICR of :func:`heldout_icr` from the held-out views' statistics."""
    eigenvalues = _check_training_eigenvalues(eigenvalues, directions.shape[0])
    cov_s, cov_xi, _ = normalised_covariances(
        stats, covariance_estimator, bias_correction=bias_correction, views=views,
    )
    tau_n = _normalised_tau(cov_xi, tau, tau_mode, stats.scale)
    # rescaled rows keep directions of features of any magnitude representable
    unit = _normalised_directions(directions, eigenvalues)
    return icr_from_eigenvalues(heldout_eigenvalues(unit, cov_s, cov_xi, tau_n, eigenvalues=eigenvalues))


@validate_params(
    {"directions": ["array-like"], "statistics": [GroupedViewStatistics], "eigenvalues": ["array-like", None],
     **{k: v for k, v in _COVARIANCE_PARAMETERS.items() if k != "covariance_estimator"}},
    prefer_skip_nested_validation=True,
)
def heldout_icr_from_statistics(directions, statistics, *, eigenvalues=None, tau=1e-3, tau_mode="relative",
                                bias_correction=False):
    """:func:`heldout_icr` from the held-out views' statistics, without the views.

    The streaming form of the held-out ICR: the held-out images' views are
    added to a :class:`GroupedViewStatistics` batch by batch (or summed
    across processes) and never held together. Equal to
    ``heldout_icr(directions, views)`` on the views those statistics saw (to
    round-off) with the plain held-out covariances (``covariance_estimator``
    None, as scorers use it).

    Parameters
    ----------
    directions : ndarray of shape (k, d)
        Fisher directions, one per row (e.g. the training decomposition's).
    statistics : GroupedViewStatistics
        Statistics of the held-out views (at least 2 images).
    eigenvalues : array-like of shape (k,) or None, default=None
        The training eigenvalues of ``directions``; see :func:`heldout_icr`.
    tau : float, default=1e-3
        Ridge on the held-out Sigma_xi, as in :func:`decompose`.
    tau_mode : {"relative", "absolute"}, default="relative"
        Rule for ``tau`` applied to the held-out Sigma_xi.
    bias_correction : bool, default=False
        As in :func:`decompose`.

    Returns
    -------
    icr : float

    See Also
    --------
    heldout_icr : The same from the views themselves.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import (accumulate, decompose, heldout_icr,
    ...                            heldout_icr_from_statistics)
    >>> rng = np.random.default_rng(0)
    >>> views = rng.normal(size=(400, 1, 8)) + 0.5 * rng.normal(size=(400, 4, 8))
    >>> directions = decompose(accumulate(views[:300])).directions
    >>> test = accumulate(views[300:350]).merge(accumulate(views[350:]))
    >>> bool(np.isclose(heldout_icr_from_statistics(directions, test),
    ...                 heldout_icr(directions, views[300:])))
    True
    """
    directions = np.asarray(directions, dtype=np.float64)
    statistics._check_enough()
    if directions.ndim != 2 or directions.shape[1] != statistics.n_features:
        raise ValueError(
            f"directions of shape {directions.shape} do not match statistics of "
            f"{statistics.n_features} features."
        )
    return _heldout_icr_of_statistics(
        directions, statistics, eigenvalues=eigenvalues, tau=tau, tau_mode=tau_mode,
        covariance_estimator=None, bias_correction=bias_correction,
    )


@validate_params(
    {"views": ["array-like"], "n_views": [Interval(Integral, 2, None, closed="left"), None],
     **_COVARIANCE_PARAMETERS, "method": [StrOptions({"auto", "primal", "dual"})]},
    prefer_skip_nested_validation=True,
)
def icr_score(
    views,
    n_views=None,
    *,
    tau=1e-3,
    tau_mode="relative",
    covariance_estimator=None,
    bias_correction=False,
    method="auto",
):
    """Invariant Contamination Ratio of grouped views, in one call.

    ``ICR = 1 / (1 + mean(lambda))`` where ``lambda`` solves
    ``Sigma_s v = lambda (Sigma_xi + tau I) v``; computed by the trace identity
    ``mean(lambda) = tr((Sigma_xi + tau I)^-1 Sigma_s) / d`` (no
    eigendecomposition).

    Parameters
    ----------
    views : array-like
        ``(n_images, n_views, n_features)``, or flattened
        ``(n_images, n_views * n_features)`` with ``n_views`` given or carried.
    n_views : int or None, default=None
        Views per image for flattened input.
    tau : float, default=1e-3
        Ridge on Sigma_xi; 0 means none.
    tau_mode : {"relative", "absolute"}, default="relative"
        Relative: ``tau * tr(Sigma_xi) / d``.
    covariance_estimator : sklearn covariance estimator or None, default=None
        Shrinkage for both covariances (see :func:`estimate_covariances`).
    bias_correction : bool, default=False
        Use ``cov(m) - Sigma_xi / V`` (projected to PSD) for Sigma_s.
    method : {"auto", "primal", "dual"}, default="auto"
        "primal" accumulates ``d x d`` covariances; "dual" works with
        ``(rows x rows)`` Gram matrices (Woodbury), for features wider than
        the number of rows, and never forms a ``d x d`` matrix. "auto" takes
        the dual form when ``d > n_images * n_views`` (and the estimator
        allows it), the primal form otherwise. Both agree to round-off.

    Returns
    -------
    icr : float
        In (0, 1]; lower is cleaner.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import icr_score
    >>> rng = np.random.default_rng(0)
    >>> s = rng.normal(size=(200, 1, 8))
    >>> views = s + 0.5 * rng.normal(size=(200, 4, 8))
    >>> round(icr_score(views), 2)
    0.19
    """
    views = check_grouped_views(views, n_views)
    check_covariance_estimator(covariance_estimator)
    n_images, n_views_, d = views.shape
    dual_possible = is_streaming_estimator(covariance_estimator) and not bias_correction
    if method == "dual" and not dual_possible:
        raise ValueError(
            "The dual form needs bias_correction=False (the PSD projection needs the d x d "
            "matrix) and a streaming covariance estimator (None, EmpiricalCovariance, "
            "ShrunkCovariance, LedoitWolf, OAS)."
        )
    if method == "dual" or (method == "auto" and dual_possible and d > n_images * n_views_):
        # the dual form normalises its views itself (the primal path's power-of-two
        # scale, inside skicr.metrics._dual), as GroupedViewStatistics does for the primal
        snr = dual_mean_invariant_snr(
            views, tau=tau, tau_mode=tau_mode, covariance_estimator=covariance_estimator,
        )
        return icr_from_eigenvalues([snr])
    stats = accumulate(views, GroupedViewStatistics(fourth_moments=needs_fourth_moments(covariance_estimator)))
    needs_rows = not is_streaming_estimator(covariance_estimator)
    return decompose(
        stats, tau=tau, tau_mode=tau_mode, covariance_estimator=covariance_estimator,
        bias_correction=bias_correction, views=views if needs_rows else None, spectrum=False,
    ).icr
