"""Alias of :mod:`skicr.views` (its old private name), so that old pickles and imports still work."""

from .views import ViewArray, infer_n_views, view_feature_names  # noqa: F401

__all__ = ["ViewArray", "infer_n_views", "view_feature_names"]
