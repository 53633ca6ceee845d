"""Criteria meant to be compared across layers of different width.

The ICR averages the generalized eigenvalues over all ``d`` directions of a
layer's own features, so a wide layer and a narrow one are not on one scale
(docs/layer_study.md). These functions measure the same spectrum in ways
whose scale does not depend on ``d`` alone: a mean over a fixed number of
top directions (:func:`heldout_spectrum` on the first ``k`` directions), a
count of directions dominated by invariant signal
(:func:`invariant_dimensions`) and the effective rank of the invariant part
(:func:`invariant_effective_rank`, the seed's "expansion").
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ._baselines import effective_rank
from ._covariance import normalised_covariances
from ._icr import _normalised_tau, accumulate
from ._spectrum import _check_training_eigenvalues, _normalised_directions, heldout_eigenvalues
from ._validation import check_grouped_views

__all__ = ["heldout_spectrum", "invariant_dimensions", "invariant_effective_rank"]


@validate_params(
    {"directions": ["array-like"], "views": ["array-like"],
     "tau": [Interval(Real, 0, None, closed="left")],
     "tau_mode": [StrOptions({"relative", "absolute"})], "bias_correction": ["boolean"],
     "eigenvalues": ["array-like", None]},
    prefer_skip_nested_validation=True,
)
def heldout_spectrum(directions, views, *, eigenvalues=None, tau=1e-3, tau_mode="relative",
                     bias_correction=False):
    """Invariant SNR of new views along each of fixed (training) Fisher directions.

    ``lambda_i = w_i^T Sigma_s w_i / w_i^T (Sigma_xi + tau I) w_i`` with the
    plain covariances of ``views`` (the held-out data). With all ``d``
    directions of a decomposition fitted on the same views this gives back
    its eigenvalues, and ``1 / (1 + mean(lambda))`` is
    :func:`~skicr.metrics.heldout_icr`; with the first ``k`` directions it is
    the held-out ICR of the top-``k`` subspace, whose scale does not depend on
    the layer's width. With the training ``eigenvalues`` the directions of a
    degenerate training eigenspace share its pooled value
    (:func:`~skicr.metrics.eigenspace_snr`), which depends on no arbitrary
    basis; to score the top ``k`` of them, pass all directions and take the
    first ``k`` values (a cut through an eigenspace is basis-dependent).

    Parameters
    ----------
    directions : array-like of shape (k, d)
        Fisher directions, one per row, best first (e.g. the
        ``components_`` of a fitted :class:`skicr.InvariantResidualDecomposer`).
    views : array-like of shape (n_images, n_views, d)
        Held-out grouped views.
    eigenvalues : array-like of shape (k,) or None, default=None
        The training eigenvalues of ``directions`` (descending); see
        :func:`~skicr.metrics.heldout_icr`. None scores each direction on its own.
    tau : float, default=1e-3
        Ridge on the held-out Sigma_xi, as in :func:`~skicr.metrics.decompose`.
    tau_mode : {"relative", "absolute"}, default="relative"
        Relative: ``tau * tr(Sigma_xi) / d``.
    bias_correction : bool, default=False
        Use ``cov(m) - Sigma_xi / V`` (projected to PSD) for Sigma_s, which
        removes the ``1 / V`` that residual noise adds to every direction's
        SNR (a direction with no invariant signal then scores 0, not about
        ``1 / V``).

    Returns
    -------
    eigenvalues : ndarray of shape (k,)
        Non-negative, in the order of ``directions``.

    See Also
    --------
    skicr.metrics.heldout_icr : The ICR of all of them.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import accumulate, decompose, heldout_icr, heldout_spectrum
    >>> rng = np.random.default_rng(0)
    >>> views = rng.normal(size=(400, 1, 8)) + 0.5 * rng.normal(size=(400, 4, 8))
    >>> directions = decompose(accumulate(views[:300])).directions
    >>> snr = heldout_spectrum(directions, views[300:])
    >>> bool(np.isclose(1 / (1 + snr.mean()), heldout_icr(directions, views[300:])))
    True
    >>> snr[:3].shape                       # the top 3 directions' SNR
    (3,)
    """
    directions = np.asarray(directions, dtype=np.float64)
    views = check_grouped_views(views, min_images=2)
    if directions.ndim != 2 or directions.shape[1] != views.shape[2] or directions.shape[0] < 1:
        raise ValueError(
            f"directions of shape {directions.shape} do not match views with "
            f"{views.shape[2]} features (expected (k >= 1, {views.shape[2]}))."
        )
    eigenvalues = _check_training_eigenvalues(eigenvalues, directions.shape[0])
    stats = accumulate(views)
    cov_s, cov_xi, _ = normalised_covariances(stats, None, bias_correction=bias_correction)
    tau_n = _normalised_tau(cov_xi, tau, tau_mode, stats.scale)
    unit = _normalised_directions(directions, eigenvalues)
    return np.maximum(heldout_eigenvalues(unit, cov_s, cov_xi, tau_n, eigenvalues=eigenvalues), 0.0)


@validate_params({"eigenvalues": ["array-like"]}, prefer_skip_nested_validation=True)
def invariant_dimensions(eigenvalues):
    """Number of directions dominated by invariant signal: ``sum_i lambda_i / (1 + lambda_i)``.

    Each direction counts between 0 (no invariant signal) and 1 (no residual):
    ``lambda / (1 + lambda)`` is the share of its variance that is invariant.
    The sum combines the seed paper's two principles, invariance (a high
    SNR per direction) and expansion (many such directions), and unlike the
    ICR it grows with the number of useful directions instead of being
    diluted by the useless ones.

    Parameters
    ----------
    eigenvalues : array-like of shape (k,)
        Invariant SNRs (generalized eigenvalues, or
        :func:`heldout_spectrum`), non-negative.

    Returns
    -------
    dimensions : float
        In [0, k]; higher is better.

    Examples
    --------
    >>> from skicr.metrics import invariant_dimensions
    >>> invariant_dimensions([1.0, 1.0, 0.0])     # two directions half invariant
    1.0
    >>> round(invariant_dimensions([99.0, 0.0]), 2)
    0.99
    """
    values = np.asarray(eigenvalues, dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("eigenvalues must be a non-empty array of finite non-negative values.")
    return float(np.sum(values / (1.0 + values)))


@validate_params(
    {"views": ["array-like"], "n_views": [Interval(Integral, 2, None, closed="left"), None],
     "bias_correction": ["boolean"]},
    prefer_skip_nested_validation=True,
)
def invariant_effective_rank(views, n_views=None, *, bias_correction=False):
    """Effective rank of the invariant covariance Sigma_s: how many directions the content spans.

    ``exp(-sum p log p)`` with ``p`` the eigenvalues of Sigma_s (the
    covariance of the images' mean features) normalised to sum 1
    (:func:`~skicr.metrics.effective_rank`). It measures expansion only: a
    representation that spreads the images over many directions scores
    high, however noisy each view is (pair it with the ICR).

    Parameters
    ----------
    views : array-like
        Grouped views ``(n_images, n_views, n_features)``, or flattened with
        ``n_views`` given or carried.
    n_views : int or None, default=None
        Views per image for flattened input.
    bias_correction : bool, default=False
        Use ``cov(m) - Sigma_xi / V`` (projected to PSD) for Sigma_s.

    Returns
    -------
    rank : float
        In [1, d]; higher is a wider invariant part.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import invariant_effective_rank
    >>> rng = np.random.default_rng(0)
    >>> content = rng.normal(size=(500, 1, 4))             # 4 equal directions
    >>> views = np.concatenate([content, np.zeros((500, 1, 4))], axis=2)
    >>> views = views + 0.01 * rng.normal(size=(500, 3, 8))
    >>> round(invariant_effective_rank(views))
    4
    """
    views = check_grouped_views(views, n_views)
    cov_s, _, _ = normalised_covariances(accumulate(views), None, bias_correction=bias_correction)
    eigenvalues = np.clip(np.linalg.eigvalsh(cov_s), 0.0, None)
    if not eigenvalues.sum() > 0:
        raise ValueError("every image has the same mean feature: Sigma_s is zero and its "
                         "effective rank is undefined.")
    return effective_rank(eigenvalues)
