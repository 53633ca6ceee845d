"""Grouped-view data layout shared by every skicr estimator.

Rows are images. Views of one image travel either as a 3-D array
``(n_images, n_views, n_features)`` or flattened to
``(n_images, n_views * n_features)`` with views contiguous: columns
``[v * d:(v + 1) * d]`` are view ``v``.

A flattened array must say how many views it holds. That comes from, in
order: an explicit ``n_views``; a :class:`ViewArray` (what
:class:`skicr.FeatureExtractor` returns), which carries ``n_views`` through a
Pipeline and through row indexing; or pandas columns named ``view{v}_...``
(``set_output(transform="pandas")``). So the user sets ``n_views`` once, on
the extractor.
"""

import re

import numpy as np

__all__ = ["ViewArray", "infer_n_views", "view_feature_names"]

_VIEW_COLUMN = re.compile(r"^view(\d+)_")


class ViewArray(np.ndarray):
    """A 2-D float array of flattened views that remembers ``n_views``.

    Behaves as a plain :class:`numpy.ndarray`; row selection (as done by
    cross-validation splitters) keeps the ``n_views`` attribute.

    Parameters
    ----------
    data : array-like of shape (n_images, n_views * n_features)
        Flattened views, views contiguous.
    n_views : int
        Number of views per image.
    """

    def __new__(cls, data, n_views):
        obj = np.asarray(data).view(cls)
        if obj.ndim != 2 or obj.shape[1] % int(n_views):
            raise ValueError(
                f"ViewArray needs a 2-D array whose n_columns is a multiple of "
                f"n_views={n_views}; got shape {obj.shape}."
            )
        obj.n_views = int(n_views)
        return obj

    def __array_finalize__(self, obj):
        self.n_views = getattr(obj, "n_views", None)

    def __reduce__(self):
        # keep n_views through pickling (joblib workers)
        state = super().__reduce__()
        return (state[0], state[1], (state[2], self.n_views))

    def __setstate__(self, state):
        base_state, self.n_views = state
        super().__setstate__(base_state)


def infer_n_views(X):
    """Return the number of views that ``X`` carries, or None if it carries none.

    Parameters
    ----------
    X : array-like or DataFrame
        3-D arrays give ``X.shape[1]``; a :class:`ViewArray` its ``n_views``;
        a DataFrame with ``view{v}_`` column names the number of distinct ``v``.

    Returns
    -------
    n_views : int or None
    """
    if isinstance(X, ViewArray) and X.n_views is not None:
        return X.n_views
    columns = getattr(X, "columns", None)
    if columns is not None:
        matches = [_VIEW_COLUMN.match(str(c)) for c in columns]
        if matches and all(matches):
            return len({m.group(1) for m in matches})
        return None
    ndim = getattr(X, "ndim", None)
    if ndim == 3:
        return X.shape[1]
    return None


def view_feature_names(n_views, feature_names):
    """Names ``view{v}_{name}`` for flattened views, views contiguous.

    Parameters
    ----------
    n_views : int
        Number of views.
    feature_names : sequence of str
        Names of the per-view features.

    Returns
    -------
    names : ndarray of str, shape (n_views * len(feature_names),)
    """
    return np.asarray(
        [f"view{v}_{name}" for v in range(n_views) for name in feature_names],
        dtype=object,
    )
