"""Input validation for grouped views: kept as a re-export of :mod:`skicr.views`.

The one home of the grouped-view contract is :mod:`skicr.views`; this module
keeps the metrics' imports (and branches based on them) working.
"""

from ..views import check_grouped_views, resolve_n_views, split_views, view_values

__all__ = ["check_grouped_views", "resolve_n_views", "split_views", "view_values"]
