"""Streaming: views and decomposers from a stream of image batches, on one or many processes.

A loader (any iterable of image batches, typically a
:class:`torch.utils.data.DataLoader`) is consumed one batch at a time: each
batch's views are extracted, added to :class:`~skicr.metrics.GroupedViewStatistics` and
dropped, so memory holds one batch of views and the ``d x d`` statistics,
whatever the number of images. Under ``torch.distributed`` each process
extracts its shard and the statistics are summed with one all-reduce.

Image numbering: every image's augmentation and noise are seeded by its
global number (see :class:`~skicr.extraction.FeatureExtractor`). By default an image's number
is its position in the stream. Under a
:class:`~torch.utils.data.distributed.DistributedSampler` it is the image's
dataset index, taken from the sampler, so the shards of all ranks together
carry the same views as one process reading the dataset in order.

- ``_loader``: batch parsing, image numbering (:class:`LoaderViews`,
  :func:`iter_loader_views`);
- ``_checkpoint``: the checkpoint format of accumulated statistics;
- ``_fit``: :func:`statistics_from_loader`, :func:`fit_from_loader`;
- ``_folds``: :func:`fold_statistics_from_loader`, the per-fold statistics of
  one noise level (the core of
  :class:`~skicr.model_selection.StreamingNoiseLevelSelector`).

These are also importable from :mod:`skicr.extraction` (their first home).
"""

from ._fit import fit_from_loader, statistics_from_loader
from ._folds import FoldStatistics, fold_statistics_from_loader
from ._loader import LoaderViews, iter_loader_views

__all__ = ["LoaderViews", "iter_loader_views", "statistics_from_loader", "fit_from_loader",
           "FoldStatistics", "fold_statistics_from_loader"]
