"""Drivers: the statistics, and a fitted decomposer, of every image of a loader."""

from .._utils.validation import check_streaming_estimator
from ..metrics import GroupedViewStatistics
from ._checkpoint import _CheckpointedStream, _load_checkpoint, _save_checkpoint
from ._loader import _is_fitted

__all__ = ["statistics_from_loader", "fit_from_loader"]


def statistics_from_loader(
    extractor,
    loader,
    *,
    distributed="auto",
    group=None,
    image_indices="auto",
    checkpoint=None,
    checkpoint_every=50,
    progress=None,
):
    """Grouped-view statistics of every image of a loader, in bounded memory.

    Each batch's views are extracted, added to a
    :class:`~skicr.metrics.GroupedViewStatistics` and dropped. Under
    ``torch.distributed`` each rank reads its shard and the statistics are
    summed once at the end (one SUM all-reduce), so every rank returns the
    totals.

    Parameters
    ----------
    extractor : FeatureExtractor
        Fitted on the first batch if it is not fitted yet.
    loader : iterable
        Batches of images; see :func:`iter_loader_views` for the formats and
        how images are numbered.
    distributed : {"auto", True, False}, default="auto"
        Sum the statistics across the processes of ``group``. ``"auto"``:
        when ``torch.distributed`` is initialised. False keeps each rank's own
        statistics.
    group : torch.distributed.ProcessGroup or None, default=None
        Process group; the default group when None.
    image_indices : {"auto", "position"}, default="auto"
        Image numbering; see :func:`iter_loader_views`.
    checkpoint : str, path or None, default=None
        File to save the accumulated statistics to every
        ``checkpoint_every`` batches, when the loop is interrupted by an
        exception, and at the end. If the file exists, its statistics are
        loaded, the batches it already holds are skipped (read and checked
        against a hash of their content, not extracted) and accumulation
        resumes: the result is the same as an uninterrupted run. The settings
        it was built with must match (clear error otherwise). Under
        ``torch.distributed`` with several processes each rank uses its own
        file, ``<stem>.rank<r><suffix>``. Resuming needs a loader that yields
        the same batches in the same order (no unseeded shuffling). The path
        is checked for writing before the first batch is read; on resume the
        file's content hash and structure are verified (a corrupted or edited
        checkpoint is an error naming it).
    checkpoint_every : int, default=50
        Batches between checkpoints.
    progress : bool or None, default=None
        Progress bar over loader batches (rank 0 only); None uses
        ``extractor.progress``.

    Returns
    -------
    statistics : GroupedViewStatistics
        Statistics of all images (of all ranks when distributed).

    See Also
    --------
    fit_from_loader : These statistics turned into a fitted decomposer.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from skicr.extraction import FeatureExtractor, statistics_from_loader
    >>> from skicr.models import SmallUNet
    >>> images = torch.rand(10, 1, 16, 16)
    >>> extractor = FeatureExtractor(SmallUNet(channels=(8, 16), mid_channels=16),
    ...                              layer="mid", n_views=2, random_state=0)
    >>> stats = statistics_from_loader(extractor, DataLoader(TensorDataset(images),
    ...                                                      batch_size=4))
    >>> stats.n_images, stats.residual_scatter.shape
    (10, (16, 16))

    The same statistics as from all the views in memory:

    >>> from skicr.metrics import accumulate
    >>> views = extractor.fit(images.numpy()).transform_views(images.numpy())
    >>> in_memory = accumulate(views)
    >>> bool(np.allclose(stats.residual_scatter, in_memory.residual_scatter))
    True
    """
    stream = _CheckpointedStream(extractor, checkpoint, load=_load_checkpoint, distributed=distributed,
                                 group=group, progress=progress, checkpoint_every=checkpoint_every)
    state = stream.state
    statistics = GroupedViewStatistics() if state is None else state["statistics"]

    def update(number, item):
        if len(item.indices):
            statistics.update(item.views)

    def save(path, **position):
        _save_checkpoint(path, statistics=statistics, **position)

    stream.run(loader, update=update, save=save, image_indices=image_indices)
    distributed, rank = stream.distributed, stream.rank
    if distributed:
        if statistics.n_features is None:
            if not _is_fitted(extractor):
                raise RuntimeError(
                    f"Rank {rank} received no batches and its extractor is not fitted, so the feature "
                    "width is unknown; fit the extractor before fit_from_loader."
                )
            statistics = GroupedViewStatistics(extractor.n_features_out_, extractor.n_views)
        statistics.all_reduce(group)
    elif statistics.n_images == 0:
        raise ValueError("The loader yielded no images; nothing to fit.")
    return statistics


def fit_from_loader(
    extractor,
    loader,
    decomposer=None,
    *,
    distributed="auto",
    group=None,
    image_indices="auto",
    checkpoint=None,
    checkpoint_every=50,
    progress=None,
):
    """A decomposer fitted on every image of a loader, in memory that does not grow with them.

    Views are extracted one loader batch at a time and only the ``d x d``
    statistics persist (:func:`statistics_from_loader`); the decomposer is
    then fitted from them with
    :meth:`~skicr.InvariantResidualDecomposer.fit_statistics`. The result
    equals ``decomposer.fit(extractor.transform_views(all_images))`` for a
    non-shuffled loader. Under ``torch.distributed`` (e.g. launched with
    ``torchrun``) each process reads its shard, the statistics are summed
    with one all-reduce and every rank returns the same fitted decomposer.

    Parameters
    ----------
    extractor : FeatureExtractor
        Fitted on the first batch if it is not fitted yet.
    loader : iterable
        Batches of images: arrays or tensors, tuples/lists whose first
        element is the images, or dicts with an ``"image"``, ``"images"`` or
        ``"pixel_values"`` key; typically a
        :class:`torch.utils.data.DataLoader`, with a ``DistributedSampler``
        when distributed (see :func:`iter_loader_views` for the numbering).
    decomposer : InvariantResidualDecomposer or None, default=None
        The estimator to fit (in place), with a streaming covariance
        estimator (None, ``EmpiricalCovariance``, ``ShrunkCovariance``,
        ``LedoitWolf``, ``OAS``); None uses the defaults.
    distributed : {"auto", True, False}, default="auto"
        Sum the statistics across processes; ``"auto"``: when
        ``torch.distributed`` is initialised.
    group : torch.distributed.ProcessGroup or None, default=None
        Process group; the default group when None.
    image_indices : {"auto", "position"}, default="auto"
        Image numbering; see :func:`iter_loader_views`.
    checkpoint : str, path or None, default=None
        Save and resume the accumulated statistics; see
        :func:`statistics_from_loader`.
    checkpoint_every : int, default=50
        Batches between checkpoints.
    progress : bool or None, default=None
        Progress bar over loader batches (rank 0 only); None uses
        ``extractor.progress``.

    Returns
    -------
    decomposer : InvariantResidualDecomposer
        Fitted on all images (of all ranks when distributed).

    See Also
    --------
    iter_loader_views : The views of each batch, to drive a loop yourself.
    skicr.InvariantResidualDecomposer.partial_fit : Per-batch refits.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from skicr.extraction import FeatureExtractor, fit_from_loader
    >>> from skicr.extraction._testing import TinyEDMNet
    >>> images = torch.rand(40, 1, 16, 16)
    >>> loader = DataLoader(TensorDataset(images), batch_size=16)
    >>> extractor = FeatureExtractor(TinyEDMNet(), layer="mid", random_state=0)
    >>> decomposer = fit_from_loader(extractor, loader)
    >>> decomposer.n_images_seen_, decomposer.covariance_s_.shape
    (40, (16, 16))
    """
    from ..decomposition import InvariantResidualDecomposer  # the estimator layer above this one

    if decomposer is None:
        decomposer = InvariantResidualDecomposer()
    if not isinstance(decomposer, InvariantResidualDecomposer):
        raise TypeError(
            f"decomposer must be an InvariantResidualDecomposer or None; got {type(decomposer).__name__}."
        )
    decomposer._validate_params()
    # before hours of extraction
    check_streaming_estimator(decomposer.covariance_estimator, "fit_from_loader")
    if decomposer.n_views is not None and decomposer.n_views != extractor.n_views:
        raise ValueError(
            f"decomposer.n_views={decomposer.n_views} but the extractor makes {extractor.n_views} views."
        )
    statistics = statistics_from_loader(
        extractor, loader, distributed=distributed, group=group, image_indices=image_indices,
        checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
    )
    return decomposer.fit_statistics(statistics)
