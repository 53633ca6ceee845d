"""Grouped views: the data layout shared by every skicr estimator, and its one check.

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

import numbers
import re

import numpy as np
from scipy import sparse
from sklearn.utils._param_validation import Interval, validate_params

__all__ = [
    "ViewArray",
    "check_grouped_views",
    "infer_n_views",
    "resolve_n_views",
    "split_views",
    "reorder_view_columns",
    "view_column_order",
    "view_feature_names",
    "view_values",
]

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

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.views import ViewArray
    >>> X = ViewArray(np.zeros((5, 3 * 4)), n_views=3)   # 5 images, 3 views of 4 features
    >>> X.n_views, X[1:3].n_views                        # row selection keeps n_views
    (3, 3)
    >>> X.reshape(5, 3, 4).shape                         # views are contiguous
    (5, 3, 4)
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


def view_column_order(columns):
    """Column order that makes ``view{v}_{name}`` columns views-contiguous, or None.

    Names that state the layout are honoured: columns may come in any order
    (feature-major, shuffled); they are put in view-major order, views by
    number, each view's features in the order of the first view. Names that
    contradict each other (a name twice, views with other features, a view
    number missing) are refused, since no layout would honour them all.

    Parameters
    ----------
    columns : sequence
        Column names.

    Returns
    -------
    n_views : int or None
        Views the names state, None when not every name is ``view{v}_...``.
    order : ndarray of int or None
        Positions of the columns in view-major order; None when they are in
        it already (or the names state no layout).
    """
    names = [str(c) for c in columns]
    matches = [_VIEW_COLUMN.match(name) for name in names]
    if not names or not all(matches):
        return None, None
    features = {}
    for position, (name, match) in enumerate(zip(names, matches)):
        view, feature = int(match.group(1)), name[match.end():]
        features.setdefault(view, {})
        if feature in features[view]:
            raise ValueError(f"The column name {name!r} appears twice; view columns must be unique.")
        features[view][feature] = position
    views = sorted(features)
    if views != list(range(views[0], views[0] + len(views))):
        raise ValueError(
            f"The view columns name views {views}: view numbers must be consecutive "
            "(view0_..., view1_..., ...)."
        )
    first = list(features[views[0]])
    for view in views[1:]:
        if set(features[view]) != set(first):
            missing = sorted(set(first) ^ set(features[view]))[:3]
            raise ValueError(
                f"The view columns contradict each other: view{view} and view{views[0]} name "
                f"different features (e.g. {missing}); every view needs the same features."
            )
    order = np.array([features[view][feature] for view in views for feature in first])
    if np.array_equal(order, np.arange(len(names))):
        return len(views), None
    return len(views), order


def reorder_view_columns(X):
    """A DataFrame with ``view{v}_`` columns put in view-major order; other input as is.

    Parameters
    ----------
    X : array-like or DataFrame

    Returns
    -------
    X : array-like or DataFrame
        The same object, or a DataFrame with its columns reordered as
        :func:`view_column_order` says.
    """
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "iloc"):
        return X
    _, order = view_column_order(columns)
    return X if order is None else X.iloc[:, order]


def infer_n_views(X):
    """Return the number of views that ``X`` carries, or None if it carries none.

    Parameters
    ----------
    X : array-like or DataFrame
        3-D arrays give ``X.shape[1]``; a :class:`ViewArray` its ``n_views``;
        a DataFrame with ``view{v}_`` column names the number of distinct ``v``
        (names that contradict each other raise, see :func:`view_column_order`).

    Returns
    -------
    n_views : int or None
    """
    if isinstance(X, ViewArray) and X.n_views is not None:
        return X.n_views
    columns = getattr(X, "columns", None)
    if columns is not None:
        return view_column_order(columns)[0]
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


def view_values(X, *, defer_to_sklearn=False):
    """``X`` as an ndarray with the number of views it carries, with clear messages.

    Nested lists are converted first (so a 3-D list is recognised as 3-D);
    ragged lists, non-numeric and complex data, and arrays that are neither
    2-D nor 3-D are refused with a message naming the problem.

    Parameters
    ----------
    X : array-like
        3-D views, flattened 2-D views (ndarray, :class:`ViewArray`,
        DataFrame), or nested lists of either.
    defer_to_sklearn : bool, default=False
        Leave what sklearn's ``validate_data`` describes well (sparse
        matrices, 0-D and 1-D input, dtypes) to it, as estimators should.

    Returns
    -------
    values : ndarray of ndim 2 or 3
        The data (not copied where possible, not yet cast).
    carried : int or None
        Views per image that ``X`` carries (3-D shape, ViewArray, column names).
    """
    X = reorder_view_columns(X)  # column names that state the layout are honoured
    carried = infer_n_views(X) if isinstance(X, ViewArray) or hasattr(X, "columns") else None
    if sparse.issparse(X):
        if defer_to_sklearn:
            return X, carried
        raise TypeError("Grouped views must be dense; got a sparse matrix (call .toarray()).")
    if hasattr(X, "to_numpy"):
        values = X.to_numpy()
    else:
        try:
            values = np.asarray(X)
        except ValueError as error:  # numpy refuses ragged nested lists
            raise ValueError(
                "Grouped views are ragged: every image needs the same number of views and "
                f"every view the same number of features ({error})."
            ) from None
    if defer_to_sklearn and values.ndim < 2:
        return values, carried
    if values.dtype == object and not defer_to_sklearn:
        raise ValueError(
            "Grouped views must be a numeric array of the same number of views per image and "
            f"features per view; got an object array of shape {values.shape} (ragged or mixed input)."
        )
    if values.ndim not in (2, 3):
        raise ValueError(
            "Grouped views must be 3-D (n_images, n_views, n_features) or 2-D "
            f"(n_images, n_views * n_features); got a {values.ndim}-D array of shape "
            f"{values.shape}."
        )
    if not defer_to_sklearn and (
        not (np.issubdtype(values.dtype, np.number) or values.dtype == bool)
        or np.issubdtype(values.dtype, np.complexfloating)
    ):
        raise ValueError(f"Views must be real numbers; got dtype {values.dtype}.")
    if values.ndim == 3:
        carried = values.shape[1]
    return values, carried


_UNSET = object()


def resolve_n_views(X, n_views=None, carried=_UNSET):
    """Return the number of views of ``X``, checking explicit and carried values agree.

    Parameters
    ----------
    X : array-like
        3-D views, a :class:`ViewArray`, a DataFrame with
        ``view{v}_`` columns, or a plain 2-D array (then ``n_views`` is needed).
    n_views : int or None
        Number of views given by the caller.
    carried : int or None, optional
        The views ``X`` carries, when the caller has worked them out already
        (see :func:`view_values`).

    Returns
    -------
    n_views : int
    """
    carried = infer_n_views(X) if carried is _UNSET else carried
    if n_views is not None:
        if not isinstance(n_views, numbers.Integral) or isinstance(n_views, bool):
            raise TypeError(f"n_views must be an int, got {n_views!r}.")
        if carried is not None and carried != n_views:
            raise ValueError(
                f"n_views={n_views} disagrees with the {carried} views that X carries "
                f"(shape {np.shape(X)}). Leave n_views=None to use the views of X."
            )
        resolved = int(n_views)
    elif carried is not None:
        resolved = int(carried)
    else:
        raise ValueError(
            f"Cannot tell how many views the 2-D input of shape {np.shape(X)} holds "
            "(it carries no view layout). "
            "Pass a 3-D array (n_images, n_views, n_features), the output of "
            "FeatureExtractor, or set n_views."
        )
    if resolved < 2:
        raise ValueError(
            f"At least 2 views per image are needed to separate the invariant part "
            f"from the residual; got n_views={resolved}."
        )
    return resolved


def split_views(X2d, n_views):
    """Reshape a flattened ``(n_images, n_views * d)`` array to 3-D, checking divisibility.

    Parameters
    ----------
    X2d : ndarray of shape (n_images, n_views * n_features)
        Views contiguous: columns ``[v * d:(v + 1) * d]`` are view ``v``.
    n_views : int
        Number of views.

    Returns
    -------
    views : ndarray of shape (n_images, n_views, n_features)
    """
    n_images, n_columns = X2d.shape
    if n_columns % n_views:
        raise ValueError(
            f"X has n_features={n_columns}, which is not divisible by n_views={n_views}: "
            "flattened views must be (n_images, n_views * n_features)."
        )
    return X2d.reshape(n_images, n_views, n_columns // n_views)


@validate_params(
    {"X": ["array-like"], "n_views": [Interval(numbers.Integral, 1, None, closed="left"), None],
     "min_images": [Interval(numbers.Integral, 0, None, closed="left")], "dtype": "no_validation"},
    prefer_skip_nested_validation=True,
)
def check_grouped_views(X, n_views=None, *, min_images=2, dtype=np.float64):
    """Validate grouped views and return them as a 3-D float array.

    Parameters
    ----------
    X : array-like
        Views as ``(n_images, n_views, n_features)``, or flattened
        ``(n_images, n_views * n_features)`` with views contiguous (then
        ``n_views`` must be given or carried by ``X``).
    n_views : int or None, default=None
        Number of views when ``X`` is flattened.
    min_images : int, default=2
        Minimum number of images.
    dtype : numpy dtype, default=np.float64
        Output dtype.

    Returns
    -------
    views : ndarray of shape (n_images, n_views, n_features)
        A finite array of ``dtype``.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import check_grouped_views
    >>> flat = np.arange(24.0).reshape(3, 8)  # 3 images x (2 views x 4 features)
    >>> check_grouped_views(flat, n_views=2).shape
    (3, 2, 4)
    >>> check_grouped_views(flat)
    Traceback (most recent call last):
    ...
    ValueError: ...
    """
    values, carried = view_values(X)
    n_views = resolve_n_views(values, n_views, carried=carried)
    views = values if values.ndim == 3 else split_views(values, n_views)
    if views.shape[0] < min_images:
        raise ValueError(
            f"At least {min_images} images are needed; got {views.shape[0]} "
            f"(views of shape {views.shape})."
        )
    if views.shape[2] < 1:
        raise ValueError(f"Views have 0 features (views of shape {views.shape}).")
    views = np.asarray(views, dtype=dtype)
    if not np.isfinite(views).all():
        kind = "NaN" if np.isnan(views).any() else "infinite values"
        raise ValueError(f"Views contain {kind}; features must be finite.")
    return views
