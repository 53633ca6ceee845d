"""Baseline representation metrics computed on the same grouped views as ICR.

Each function states the formula it implements. LiDAR shares the generalized
spectrum with ICR (:func:`generalized_spectrum`); RankMe and alpha-ReQ look at
all view embeddings as rows; alignment and uniformity follow Wang & Isola
(2020) on L2-normalised features.
"""

from numbers import Integral, Real

import numpy as np
from scipy.spatial.distance import pdist
from scipy.special import logsumexp
from sklearn.utils._param_validation import Interval, validate_params

from ._covariance import normalised_covariances
from ._dual import dual_decompose
from ._icr import accumulate
from ._spectrum import generalized_spectrum
from ._statistics import GroupedViewStatistics, data_scale
from ._validation import check_grouped_views

_VIEWS = {"views": ["array-like"], "n_views": [Interval(Integral, 2, None, closed="left"), None]}


def _scaled_views(views, n_views):
    """Validated views divided by their power-of-two scale (exact).

    Every baseline here is invariant to an overall scale (LiDAR once its
    absolute ridge is expressed in the same units), so they are computed on
    features in ``[-1, 1]``, where no square or norm overflows or underflows.
    """
    views = check_grouped_views(views, n_views)
    scale = data_scale(views)
    return views * (1.0 / scale), scale

__all__ = ["effective_rank", "lidar", "rankme", "alpha_req", "alignment", "uniformity",
           "lidar_from_statistics", "rankme_from_statistics"]


@validate_params(
    {"values": ["array-like"], "eps": [Interval(Real, 0, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def effective_rank(values, eps=1e-7):
    """Entropy effective rank ``exp(-sum p log p)`` with ``p = |v| / ||v||_1 + eps``.

    Parameters
    ----------
    values : array-like of shape (k,)
        Non-negative spectrum (singular values or eigenvalues).
    eps : float, default=1e-7
        Added to each ``p`` (RankMe's and LiDAR's convention) so that zeros
        contribute nothing instead of NaN.

    Returns
    -------
    rank : float
        In [1, k] (up to the ``eps`` term).

    Examples
    --------
    >>> from skicr.metrics import effective_rank
    >>> round(effective_rank([1.0, 1.0, 1.0, 1.0]), 3)   # four equal values
    4.0
    >>> round(effective_rank([1.0, 0.0, 0.0, 0.0]), 3)   # one
    1.0
    """
    values = np.abs(np.asarray(values, dtype=np.float64)).ravel()
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError("The spectrum must be a non-empty array of finite values.")
    values = values / data_scale(values)
    total = values.sum()
    if not total > 0:
        raise ValueError("The spectrum is all zeros; the effective rank is undefined.")
    p = values / total + eps
    return float(np.exp(-np.sum(p * np.log(p))))


@validate_params(
    {**_VIEWS, "delta": [Interval(Real, 0, None, closed="left")],
     "eps": [Interval(Real, 0, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def lidar(views, n_views=None, *, delta=1e-4, eps=1e-8):
    """LiDAR (Thilak et al. 2023): effective rank of the LDA spectrum with images as classes.

    ``lambda`` solves ``Sigma_b v = lambda (Sigma_w + delta I) v`` with
    ``Sigma_b = cov(m) (N - 1 dof)`` and ``Sigma_w = sum xi xi^T / (N (V - 1))``
    (the plug-in covariances of ICR, as stable-pretraining computes them), then
    ``p = lambda / sum(lambda) + eps`` and ``LiDAR = exp(-sum p log p)``.
    Features wider than the residual rows (``d > N (V - 1)``) take the dual
    (Gram) form of the same spectrum (see ``dual_decompose``): no ``d x d``
    matrix is formed.

    Parameters
    ----------
    views : array-like
        Grouped views ``(n_images, n_views, n_features)`` or flattened.
    n_views : int or None, default=None
    delta : float, default=1e-4
        Absolute ridge on Sigma_w.
    eps : float, default=1e-8

    Returns
    -------
    lidar : float
        Higher is a richer representation.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import lidar
    >>> rng = np.random.default_rng(0)
    >>> rich = rng.normal(size=(300, 1, 8)) + 0.3 * rng.normal(size=(300, 4, 8))
    >>> poor = rich.copy()
    >>> poor[..., 1:] = 0.3 * rng.normal(size=(300, 4, 7))  # content in one feature
    >>> bool(lidar(rich) > lidar(poor))                      # higher is richer
    True
    """
    views, scale = _scaled_views(views, n_views)
    n_images, n_views_, d = views.shape
    if d > n_images * (n_views_ - 1):
        # wider than the residual rows (flattened feature maps): the same spectrum
        # through the dual (Gram) form, never a d x d matrix
        with np.errstate(over="ignore"):
            ridge = float(min(delta / np.float64(scale) ** 2, 1e300))
        spectrum = dual_decompose(views, tau=ridge, tau_mode="absolute").eigenvalues
        return effective_rank(spectrum, eps)
    return _lidar_of_statistics(accumulate(views), scale, delta, eps)


def _lidar_of_statistics(stats, scale, delta, eps):
    """LiDAR of statistics of views divided by ``scale``."""
    cov_b, cov_w, _ = normalised_covariances(stats)
    # the absolute ridge in the units of the scaled views (clipped where it
    # dwarfs every variance float64 can hold)
    with np.errstate(over="ignore"):
        ridge = float(min(delta / (np.float64(scale) * stats.scale) ** 2, 1e300))
    eigenvalues, _ = generalized_spectrum(cov_b, cov_w, ridge)
    return effective_rank(eigenvalues, eps)


def _check_statistics(statistics, name):
    if not isinstance(statistics, GroupedViewStatistics):
        raise TypeError(f"{name} expects a GroupedViewStatistics; got {type(statistics).__name__}.")
    statistics._check_enough()


@validate_params(
    {"statistics": [GroupedViewStatistics], "delta": [Interval(Real, 0, None, closed="left")],
     "eps": [Interval(Real, 0, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def lidar_from_statistics(statistics, *, delta=1e-4, eps=1e-8):
    """:func:`lidar` from the views' statistics, without the views (streaming).

    Parameters
    ----------
    statistics : GroupedViewStatistics
        Statistics of the views (at least 2 images).
    delta : float, default=1e-4
        Absolute ridge on Sigma_w, in the views' units.
    eps : float, default=1e-8
        As in :func:`lidar`.

    Returns
    -------
    lidar : float
        Equal to ``lidar(views)`` on the views the statistics saw (to round-off).

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import GroupedViewStatistics, lidar, lidar_from_statistics
    >>> views = np.random.default_rng(0).normal(size=(200, 4, 8))
    >>> stats = GroupedViewStatistics().update(views[:120]).update(views[120:])
    >>> bool(np.isclose(lidar_from_statistics(stats), lidar(views)))
    True
    """
    _check_statistics(statistics, "lidar_from_statistics")
    return _lidar_of_statistics(statistics, 1.0, delta, eps)


def _embedding_rows(views):
    return views.reshape(-1, views.shape[2])


@validate_params(
    {**_VIEWS, "eps": [Interval(Real, 0, None, closed="left")]}, prefer_skip_nested_validation=True,
)
def rankme(views, n_views=None, *, eps=1e-7):
    """RankMe (Garrido et al. 2023): effective rank of the embedding matrix.

    ``s`` are the singular values of the uncentred matrix of all view
    embeddings (``n_images * n_views`` rows); ``p = s / ||s||_1 + eps``;
    ``RankMe = exp(-sum p log p)``.

    Parameters
    ----------
    views : array-like
        Grouped views or flattened views.
    n_views : int or None, default=None
    eps : float, default=1e-7

    Returns
    -------
    rankme : float

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import rankme
    >>> rng = np.random.default_rng(0)
    >>> full = rng.normal(size=(200, 2, 8))
    >>> low = full.copy()
    >>> low[..., 4:] = 0                   # only 4 of the 8 features are used
    >>> bool(rankme(full) > rankme(low))
    True
    """
    views, _ = _scaled_views(views, n_views)
    rows = _embedding_rows(views)
    if rows.shape[0] < rows.shape[1]:
        # the same singular values; LAPACK takes a wide C-ordered matrix the slow way
        # (2.6 s against 0.07 s at 160 x 8192, flattened feature maps)
        rows = rows.T
    singular_values = np.linalg.svd(rows, compute_uv=False)
    return effective_rank(singular_values, eps)


@validate_params(
    {"statistics": [GroupedViewStatistics], "eps": [Interval(Real, 0, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def rankme_from_statistics(statistics, *, eps=1e-7):
    """:func:`rankme` from the views' statistics, without the views (streaming).

    The singular values of the embedding matrix ``X`` (all view embeddings,
    uncentred) are the square roots of the eigenvalues of
    ``X^T X = sum_iv xi_iv xi_iv^T + V sum_i m_i m_i^T``, which the statistics
    hold; the ``min(n_images * n_views, d)`` largest are kept, as the SVD has
    that many.

    Parameters
    ----------
    statistics : GroupedViewStatistics
        Statistics of the views (at least 2 images).
    eps : float, default=1e-7
        As in :func:`rankme`.

    Returns
    -------
    rankme : float
        Equal to ``rankme(views)`` on the views the statistics saw up to the
        round-off of squaring: singular values below about ``1e-8`` of the
        largest are resolved less precisely from ``X^T X`` than by an SVD
        of ``X`` (a difference of order ``1e-9`` in RankMe for such
        rank-deficient features; none for well-conditioned ones).

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import GroupedViewStatistics, rankme, rankme_from_statistics
    >>> views = np.random.default_rng(0).normal(size=(200, 2, 8))
    >>> stats = GroupedViewStatistics().update(views)
    >>> bool(np.isclose(rankme_from_statistics(stats), rankme(views)))
    True
    """
    _check_statistics(statistics, "rankme_from_statistics")
    stats = statistics
    # uncentred second moments in units of stats.scale: sum m m^T about the origin
    mean_scatter, _, residual_scatter, _ = stats.normalised_moments()
    mean = stats._mean_or_shift()
    gram = residual_scatter + stats.n_views * (mean_scatter + stats.n_images * np.outer(mean, mean))
    eigenvalues = np.linalg.eigvalsh((gram + gram.T) / 2.0)[::-1]
    n_singular = min(stats.n_images * stats.n_views, stats.n_features)
    singular_values = np.sqrt(np.clip(eigenvalues[:n_singular], 0.0, None))
    return effective_rank(singular_values, eps)


@validate_params(
    {**_VIEWS, "rtol": [Interval(Real, 0, 1, closed="left")]}, prefer_skip_nested_validation=True,
)
def alpha_req(views, n_views=None, *, rtol=1e-10):
    """alpha-ReQ (Agrawal et al. 2022): power-law decay of the covariance spectrum.

    Fits ``log lambda_i = c - alpha log i`` by least squares over the
    eigenvalues ``lambda_1 >= lambda_2 >= ...`` of the covariance of all view
    embeddings, keeping those above ``rtol * lambda_1``; returns ``alpha``.

    Parameters
    ----------
    views : array-like
        Grouped views or flattened views.
    n_views : int or None, default=None
    rtol : float, default=1e-10
        Eigenvalues below ``rtol * lambda_1`` (numerical zeros) are left out.

    Returns
    -------
    alpha : float
        Larger means faster decay (a lower-dimensional representation).

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import alpha_req
    >>> rng = np.random.default_rng(0)
    >>> scales = np.arange(1, 17) ** -1.0      # power-law spectrum of the features' std
    >>> views = rng.normal(size=(2000, 2, 16)) * scales
    >>> round(alpha_req(views), 1)             # variances decay as i**-2
    2.0
    """
    views, _ = _scaled_views(views, n_views)
    rows = _embedding_rows(views)
    eigenvalues = np.linalg.eigvalsh(np.cov(rows, rowvar=False).reshape(rows.shape[1], -1))[::-1]
    kept = eigenvalues[eigenvalues > max(rtol * eigenvalues[0], 0.0)]
    if kept.size < 2:
        raise ValueError("alpha-ReQ needs at least 2 non-zero covariance eigenvalues.")
    ranks = np.arange(1, kept.size + 1)
    slope, _ = np.polyfit(np.log(ranks), np.log(kept), 1)
    return float(-slope)


def _normalise(views):
    # each embedding divided by its largest entry first, so that its norm
    # neither overflows nor underflows whatever its magnitude
    largest = np.max(np.abs(views), axis=-1, keepdims=True)
    if np.any(largest == 0):
        raise ValueError("A view embedding has zero norm; alignment/uniformity need L2-normalisable features.")
    views = views / largest
    return views / np.linalg.norm(views, axis=-1, keepdims=True)


@validate_params(
    {**_VIEWS, "alpha": [Interval(Real, 0, None, closed="neither")]}, prefer_skip_nested_validation=True,
)
def alignment(views, n_views=None, *, alpha=2.0):
    """Alignment (Wang & Isola 2020): mean ``||z_a - z_b||^alpha`` over view pairs.

    Features are L2-normalised; the mean runs over all pairs ``a < b`` of views
    of the same image and over images. Lower is more aligned. Not invariant to
    (anisotropic) rescaling of the features, unlike ICR.

    Parameters
    ----------
    views : array-like
        Grouped views or flattened views.
    n_views : int or None, default=None
    alpha : float, default=2.0

    Returns
    -------
    alignment : float

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import alignment
    >>> rng = np.random.default_rng(0)
    >>> content = rng.normal(size=(200, 1, 8))
    >>> close = content + 0.1 * rng.normal(size=(200, 4, 8))
    >>> far = content + 1.0 * rng.normal(size=(200, 4, 8))
    >>> bool(alignment(close) < alignment(far))    # lower is more aligned
    True
    """
    if not np.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}.")
    z = _normalise(check_grouped_views(views, n_views))
    a, b = np.triu_indices(z.shape[1], k=1)
    distances = np.linalg.norm(z[:, a] - z[:, b], axis=-1)
    return float(np.mean(distances**alpha))


@validate_params(
    {**_VIEWS, "t": [Interval(Real, 0, None, closed="neither")]}, prefer_skip_nested_validation=True,
)
def uniformity(views, n_views=None, *, t=2.0):
    """Uniformity (Wang & Isola 2020): ``log mean exp(-t ||z_i - z_j||^2)`` over images.

    For each view slot ``v`` the pairs ``i < j`` of distinct images are taken
    on L2-normalised features; the mean of ``exp(-t d^2)`` runs over all pairs
    of all slots. Lower (more negative) is more uniform.

    Parameters
    ----------
    views : array-like
        Grouped views or flattened views.
    n_views : int or None, default=None
    t : float, default=2.0

    Returns
    -------
    uniformity : float

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import uniformity
    >>> rng = np.random.default_rng(0)
    >>> spread = rng.normal(size=(200, 2, 8))
    >>> clumped = spread.copy()
    >>> clumped[..., 0] += 10                # every image pushed towards one direction
    >>> bool(uniformity(spread) < uniformity(clumped))   # lower is more uniform
    True
    """
    if not np.isfinite(t):
        raise ValueError(f"t must be a finite number > 0, got {t!r}.")
    z = _normalise(check_grouped_views(views, n_views))
    exponents = np.concatenate([-t * pdist(z[:, v], "sqeuclidean") for v in range(z.shape[1])])
    # log-mean-exp without underflow: finite for any t
    return float(logsumexp(exponents) - np.log(exponents.size))
