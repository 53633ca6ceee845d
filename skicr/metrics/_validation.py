"""Input validation for grouped views (rows are images)."""

import numbers

import numpy as np

from .._views import infer_n_views


def resolve_n_views(X, n_views=None):
    """Return the number of views of ``X``, checking explicit and carried values agree.

    Parameters
    ----------
    X : array-like
        3-D views, a :class:`~skicr._views.ViewArray`, a DataFrame with
        ``view{v}_`` columns, or a plain 2-D array (then ``n_views`` is needed).
    n_views : int or None
        Number of views given by the caller.

    Returns
    -------
    n_views : int
    """
    carried = infer_n_views(X)
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
            f"Cannot tell how many views the 2-D input of shape {np.shape(X)} holds. "
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
    """
    n_views = resolve_n_views(X, n_views)
    values = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X)
    if values.ndim == 3:
        views = values
    elif values.ndim == 2:
        views = split_views(values, n_views)
    else:
        raise ValueError(
            "Grouped views must be 3-D (n_images, n_views, n_features) or 2-D "
            f"(n_images, n_views * n_features); got an array of shape {values.shape}."
        )
    if not np.issubdtype(views.dtype, np.number) or np.issubdtype(views.dtype, np.complexfloating):
        raise ValueError(f"Views must be real numbers; got dtype {views.dtype}.")
    views = np.asarray(views, dtype=dtype)
    if views.shape[0] < min_images:
        raise ValueError(
            f"At least {min_images} images are needed; got {views.shape[0]} "
            f"(views of shape {views.shape})."
        )
    if views.shape[2] < 1:
        raise ValueError("Views have 0 features.")
    if not np.isfinite(views).all():
        kind = "NaN" if np.isnan(views).any() else "infinite values"
        raise ValueError(f"Views contain {kind}; features must be finite.")
    return views
