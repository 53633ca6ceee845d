"""Nearest-neighbour retrieval by the invariant part s and by the residual xi (seed paper, Fig. 2)."""

from numbers import Integral

import numpy as np
from sklearn.neighbors import NearestNeighbors
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ..metrics import check_grouped_views

__all__ = ["retrieval_accuracy"]


def _neighbors_excluding_own_image(rows, owners, n_neighbors, metric, n_jobs):
    """For each row, the ``n_neighbors`` nearest rows that belong to other images.

    ``owners[r]`` is the image of row ``r``; an image's own rows (itself, its
    other views) are skipped, so retrieval never finds the query's own image.
    """
    n_own = int(np.bincount(owners).max())
    n_search = min(rows.shape[0], n_neighbors + n_own)
    search = NearestNeighbors(n_neighbors=n_search, metric=metric, n_jobs=n_jobs).fit(rows)
    _, candidates = search.kneighbors(rows)
    keep = owners[candidates] != owners[:, None]
    # the first n_neighbors candidates of another image, in order of distance
    rank = np.cumsum(keep, axis=1)
    picked = keep & (rank <= n_neighbors)
    return candidates[picked].reshape(rows.shape[0], n_neighbors)


@validate_params(
    {
        "views": ["array-like"],
        "labels": ["array-like"],
        "n_views": [Interval(Integral, 2, None, closed="left"), None],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "metric": [StrOptions({"euclidean", "cosine"})],
        "return_neighbors": ["boolean"],
        "n_jobs": [Integral, None],
    },
    prefer_skip_nested_validation=True,
)
def retrieval_accuracy(
    views,
    labels,
    *,
    n_views=None,
    n_neighbors=1,
    metric="euclidean",
    return_neighbors=False,
    n_jobs=None,
):
    """Label agreement of nearest neighbours found by the invariant part and by the residual.

    For image ``i`` with views ``h_iv``, the invariant part is the image mean
    ``s_i = mean_v h_iv`` and the residual of a view is ``xi_iv = h_iv - s_i``
    (the decomposition behind ICR). Each image is queried by ``s_i`` among the
    other images' means, and each view by ``xi_iv`` among the residuals of
    the other images' views; the score is the fraction of the
    ``n_neighbors`` retrieved items that share the query's label
    (precision at k), averaged over queries. If ``s`` carries the content
    and ``xi`` only view-specific noise, retrieval by ``s`` agrees with the
    class far above chance and retrieval by ``xi`` stays near chance (the seed
    paper's Fig. 2). Labels are used only to score, never to retrieve.

    Parameters
    ----------
    views : array-like
        Grouped views ``(n_images, n_views, n_features)``, a
        :class:`~skicr.views.ViewArray` from
        :meth:`FeatureExtractor.transform <skicr.FeatureExtractor.transform>`,
        or flattened ``(n_images, n_views * n_features)`` with ``n_views``.
    labels : array-like of shape (n_images,)
        Class of each image (used to score only).
    n_views : int or None, default=None
        Views per image of flattened input.
    n_neighbors : int, default=1
        Neighbours retrieved per query (k of precision at k).
    metric : {"euclidean", "cosine"}, default="euclidean"
        Distance of the neighbour search.
    return_neighbors : bool, default=False
        Also return the retrieved image indices.
    n_jobs : int or None, default=None
        Parallel jobs of the neighbour search.

    Returns
    -------
    scores : dict
        ``"invariant"``: agreement of retrieval by ``s``; ``"residual"``:
        agreement of retrieval by ``xi``; ``"chance"``: the agreement of a
        random other image, ``sum_c p_c (n_c - 1) / (n - 1)`` for class
        counts ``n_c``.
    neighbors : dict
        Only when ``return_neighbors=True``: ``"invariant"`` an int array
        ``(n_images, n_neighbors)`` of retrieved images, ``"residual"`` an int
        array ``(n_images, n_views, n_neighbors)`` of the images whose views'
        residuals were retrieved.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.monitoring import retrieval_accuracy
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat(np.arange(4), 25)
    >>> content = 3 * rng.normal(size=(4, 8))[labels] + rng.normal(size=(100, 8))
    >>> views = content[:, None, :] + rng.normal(size=(100, 4, 8))
    >>> scores = retrieval_accuracy(views, labels)
    >>> bool(scores["invariant"] > 0.9), bool(scores["residual"] < 0.5)
    (True, True)
    """
    views = check_grouped_views(views, n_views, min_images=2)
    labels = np.asarray(labels)
    n_images, n_views_, _ = views.shape
    if labels.shape != (n_images,):
        raise ValueError(
            f"labels must have shape (n_images,) = ({n_images},); got {labels.shape}."
        )
    if n_neighbors > n_images - 1:
        raise ValueError(
            f"n_neighbors={n_neighbors} exceeds the {n_images - 1} other images to retrieve."
        )
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    codes = codes.reshape(-1)

    means = views.mean(axis=1)
    residuals = views - means[:, None, :]
    images = np.arange(n_images)
    by_s = _neighbors_excluding_own_image(means, images, n_neighbors, metric, n_jobs)
    by_xi = _neighbors_excluding_own_image(
        residuals.reshape(n_images * n_views_, -1),
        np.repeat(images, n_views_),
        n_neighbors,
        metric,
        n_jobs,
    )
    by_xi = by_xi // n_views_  # row of a view -> its image

    scores = {
        "invariant": float(np.mean(codes[by_s] == codes[:, None])),
        "residual": float(np.mean(codes[by_xi] == np.repeat(codes, n_views_)[:, None])),
        "chance": float(np.sum(counts * (counts - 1)) / (n_images * (n_images - 1))),
    }
    if return_neighbors:
        neighbors = {
            "invariant": by_s,
            "residual": by_xi.reshape(n_images, n_views_, n_neighbors),
        }
        return scores, neighbors
    return scores
