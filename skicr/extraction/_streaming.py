"""Views and decomposers from a stream of image batches, on one or many processes.

A loader (any iterable of image batches, typically a
:class:`torch.utils.data.DataLoader`) is consumed one batch at a time: each
batch's views are extracted, added to :class:`GroupedViewStatistics` and
dropped, so memory holds one batch of views and the ``d x d`` statistics,
whatever the number of images. Under ``torch.distributed`` each process
extracts its shard and the statistics are summed with one all-reduce.

Image numbering: every image's augmentation and noise are seeded by its
global number (see :class:`FeatureExtractor`). By default an image's number
is its position in the stream. Under a
:class:`~torch.utils.data.distributed.DistributedSampler` it is the image's
dataset index, taken from the sampler, so the shards of all ranks together
carry the same views as one process reading the dataset in order.
"""

import hashlib
import itertools
import os
from collections.abc import Mapping
from numbers import Integral
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ..metrics._statistics import GroupedViewStatistics, collective_device
from ._extractor import _iter_view_chunks
from ._images import ImageBatches, check_images

__all__ = ["LoaderViews", "iter_loader_views", "statistics_from_loader", "fit_from_loader"]

_IMAGE_KEYS = ("image", "images", "pixel_values")
_CHECKPOINT_FORMAT = "skicr.streaming.v1"
_BATCH_HELP = (
    "expected a batch of images (numpy array or torch tensor), a tuple/list whose first "
    f"element is the images, or a dict with one of the keys {list(_IMAGE_KEYS)}"
)


class LoaderViews(NamedTuple):
    """Views of one loader batch, as yielded by :func:`iter_loader_views`.

    Attributes
    ----------
    views : ndarray of shape (n_kept, n_views, d)
        float32 features of every view of the batch's kept images.
    indices : ndarray of shape (n_kept,)
        Global image numbers (int64) that seeded the views: dataset indices
        under a ``DistributedSampler``, stream positions otherwise.
    keep : ndarray of shape (n_batch,)
        Which rows of the loader batch were used (bool); False marks the
        padding duplicates a ``DistributedSampler`` adds. Select labels with
        ``labels[keep]``.
    batch : object
        The loader batch as it came (labels and all).
    """

    views: np.ndarray
    indices: np.ndarray
    keep: np.ndarray
    batch: object


# ---------------------------------------------------------------- batches
def _batch_images(batch, number):
    """The images of one loader batch (arrays, tuples/lists, dicts)."""
    if isinstance(batch, (np.ndarray, torch.Tensor)):
        return batch
    if isinstance(batch, Mapping):
        for key in _IMAGE_KEYS:
            if key in batch:
                return batch[key]
        raise ValueError(
            f"Batch {number} of the loader is a dict with keys {list(batch)[:10]}; {_BATCH_HELP}."
        )
    if isinstance(batch, (tuple, list)):
        if len(batch) == 0:
            raise ValueError(f"Batch {number} of the loader is an empty {type(batch).__name__}; {_BATCH_HELP}.")
        return batch[0]
    raise TypeError(f"Batch {number} of the loader is a {type(batch).__name__}; {_BATCH_HELP}.")


def _checked_batch(batch, number, channels):
    images = _batch_images(batch, number)
    try:
        return check_images(images, expected_channels=channels)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"Batch {number} of the loader: {exc}") from exc


def _select(batches, keep):
    """The rows ``keep`` (bool mask) of validated images."""
    rows = np.flatnonzero(keep)
    data = batches.data
    if isinstance(data, torch.Tensor):
        data = data[torch.from_numpy(rows).to(data.device)]
    else:
        data = data[rows]
    return ImageBatches(data, batches.layout)


def _hash_batch(hasher, images, indices):
    """Add a batch's content and image numbers to a running hash (resume check)."""
    hasher.update(np.ascontiguousarray(indices, dtype=np.int64).tobytes())
    data = images.data
    hasher.update(f"{tuple(data.shape)}{data.dtype}".encode())
    if isinstance(data, torch.Tensor):
        data = data.detach()
        if data.device.type != "cpu":
            # no copy to the host: a summary, exact for the same device and data
            summary = torch.stack([data.double().sum(), (data.double() ** 2).sum()])
            hasher.update(summary.cpu().numpy().tobytes())
            return
        data = data.numpy()
    hasher.update(np.ascontiguousarray(data).tobytes())


# -------------------------------------------------------------- numbering
def _distributed_sampler(loader):
    """The loader's DistributedSampler, or None."""
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    if not isinstance(loader, DataLoader):
        return None
    batch_sampler = loader.batch_sampler
    sampler = loader.sampler if batch_sampler is None else getattr(batch_sampler, "sampler", None)
    if not isinstance(sampler, DistributedSampler):
        return None
    if batch_sampler is None:
        raise ValueError(
            "The DataLoader has batch_size=None, so it yields single samples; give it a "
            "batch_size so that it yields batches of images."
        )
    if loader.num_workers > 0 and not getattr(loader, "in_order", True):
        raise ValueError(
            "The DataLoader has in_order=False: its batches may arrive out of sampler order, so "
            "the images' dataset indices are unknown. Use in_order=True (the default)."
        )
    return sampler


class _Numbering:
    """Global numbers of the images of a stream, batch after batch.

    Position numbering by default; dataset indices under a DistributedSampler,
    read from a second pass over the sampler (its order is deterministic for a
    given epoch and seed), one batch at a time so nothing grows with the data.
    Padded list position ``rank + k * num_replicas`` of rank ``rank``'s
    ``k``-th sample at or past ``len(dataset)`` marks a padding duplicate.
    """

    def __init__(self, loader, image_indices):
        self.sampler = _distributed_sampler(loader) if image_indices == "auto" else None
        self.mode = "position" if self.sampler is None else "sampler"
        self.position = 0
        if self.sampler is not None:
            self._order = iter(self.sampler)
            self._n_dataset = len(self.sampler.dataset)

    def next(self, n_rows):
        positions = np.arange(self.position, self.position + n_rows, dtype=np.int64)
        self.position += n_rows
        if self.sampler is None:
            return positions, np.ones(n_rows, dtype=bool)
        indices = np.fromiter(itertools.islice(self._order, n_rows), dtype=np.int64)
        if len(indices) != n_rows:
            raise RuntimeError(
                f"The DataLoader yielded more images ({self.position}) than its DistributedSampler "
                "lists; was the sampler changed (set_epoch) during the iteration?"
            )
        padded = self.sampler.rank + positions * self.sampler.num_replicas
        return indices, padded < self._n_dataset


# ----------------------------------------------------------------- engine
def _is_fitted(estimator):
    try:
        check_is_fitted(estimator)
    except Exception:
        return False
    return True


def _prepare(extractor, batch, number):
    """Fit the extractor on its first batch if needed; check its parameters."""
    if not _is_fitted(extractor):
        extractor.fit(_checked_batch(batch, number, None).data)
        return
    extractor._validate_params()
    extractor.backbone_.check_sigma(extractor.sigma)


def _length(loader):
    try:
        return len(loader)
    except TypeError:  # iterables and IterableDataset loaders without a length
        return None


def _stream(extractor, loader, *, base_seed=None, image_indices="auto", skip=0,
            resume_digest=None, hasher=None, progress=False, on_ready=None):
    """Views of every loader batch: yields (batch number, LoaderViews, hash copy or None).

    The first ``skip`` batches are read and numbered but not extracted; with a
    ``hasher`` their content must hash to ``resume_digest``. ``on_ready(mode)``
    is called once the extractor is fitted, before any batch is extracted.
    """
    if image_indices not in ("auto", "position"):
        raise ValueError(f"image_indices must be 'auto' or 'position'; got {image_indices!r}.")
    numbering = _Numbering(loader, image_indices)
    options = None
    number = -1
    for number, batch in enumerate(tqdm(loader, total=_length(loader), disable=not progress,
                                        unit="batch", desc="extracting views")):
        if options is None:
            _prepare(extractor, batch, number)
            if on_ready is not None:
                on_ready(numbering.mode)
            options = extractor._extraction_options(progress=False)
            if base_seed is not None:
                options["base_seed"] = int(base_seed)
            layer, channels = extractor.layer_, extractor.backbone_.in_channels
            n_views, d = extractor.n_views, extractor.n_features_out_
        images = _checked_batch(batch, number, channels)
        indices, keep = numbering.next(images.n_images)
        if hasher is not None:
            _hash_batch(hasher, images, indices)
        if number < skip:
            if number == skip - 1 and hasher is not None and hasher.hexdigest() != resume_digest:
                raise ValueError(
                    f"The loader's first {skip} batches differ from those the checkpoint was "
                    "built from (a shuffled loader, other data, or another batch size?); resuming "
                    "needs the same batches in the same order. Delete the checkpoint to start over."
                )
            continue
        if not keep.all():
            images, indices = _select(images, keep), indices[keep]
        views = np.empty((len(indices), n_views, d), dtype=np.float32)
        if len(indices):
            for start, stop, features in _iter_view_chunks(
                extractor.backbone_, images, layers=(layer,), indices=indices, **options
            ):
                views[start:stop] = features[layer]
        yield number, LoaderViews(views, indices, keep, batch), (
            None if hasher is None else hasher.copy()
        )
    if number + 1 < skip:
        raise ValueError(
            f"The checkpoint has consumed {skip} batches but the loader yielded only {number + 1}; "
            "resuming needs the same loader. Delete the checkpoint to start over."
        )


def iter_loader_views(extractor, loader, *, image_indices="auto", progress=None):
    """Views of the images of a loader, one loader batch at a time.

    Each batch is extracted in chunks of the extractor's ``batch_size`` and
    its views are yielded, so memory holds one batch whatever the number of
    images. A non-shuffled loader gives exactly
    ``extractor.transform_views`` of the concatenated images.

    Parameters
    ----------
    extractor : FeatureExtractor
        Fitted on the first batch if it is not fitted yet.
    loader : iterable
        Yields batches: arrays or tensors of images (any layout and range
        :class:`FeatureExtractor` accepts), tuples or lists whose first
        element is the images (labels and the rest are ignored), or dicts
        with an ``"image"``, ``"images"`` or ``"pixel_values"`` key. A
        :class:`torch.utils.data.DataLoader` is the usual choice.
    image_indices : {"auto", "position"}, default="auto"
        How images are numbered (the number seeds an image's augmentation
        and noise). ``"position"``: by position in the stream, 0, 1, 2, ...
        ``"auto"``: the same, except for a DataLoader whose sampler is a
        ``DistributedSampler``: then each image's number is its dataset index
        (read from the sampler) and the padding duplicates the sampler adds
        when ``len(dataset)`` is not divisible by the number of processes are
        dropped, so all ranks together see every image once, with the views
        of a single-process run in dataset order. A shuffled single-process
        loader (``RandomSampler``) is numbered by position.
    progress : bool or None, default=None
        Progress bar over loader batches; None uses ``extractor.progress``.

    Yields
    ------
    item : LoaderViews
        ``views`` (float32, ``(n_kept, n_views, d)``), ``indices`` (the
        global numbers of the kept images), ``keep`` (bool mask over the
        batch rows; False for dropped padding duplicates) and ``batch`` (the
        loader batch as it came).

    See Also
    --------
    fit_from_loader : A fitted decomposer from a loader in one call.

    Notes
    -----
    With ``random_state=None`` the extractor draws one fresh seed per call;
    under ``torch.distributed`` give it an integer ``random_state`` so that
    the ranks agree (:func:`fit_from_loader` broadcasts rank 0's seed
    itself). A DataLoader with ``drop_last=True`` (or a DistributedSampler
    with ``drop_last=True``) leaves images out; the numbering of the others
    is unchanged. The equality with ``transform_views`` holds for per-image
    augmentations (the default, any :class:`ViewAugmentation`, None); a plain
    augmentation callable is seeded once per chunk, so its draws depend on
    how the stream is cut into batches.

    Examples
    --------
    >>> import numpy as np
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> import torch
    >>> from skicr.extraction import FeatureExtractor, iter_loader_views
    >>> from skicr.extraction._testing import TinyEDMNet
    >>> images = torch.rand(10, 1, 16, 16)
    >>> loader = DataLoader(TensorDataset(images), batch_size=4)
    >>> extractor = FeatureExtractor(TinyEDMNet(), layer="mid", random_state=0)
    >>> [item.views.shape for item in iter_loader_views(extractor, loader)]
    [(4, 4, 16), (4, 4, 16), (2, 4, 16)]
    """
    progress = extractor.progress if progress is None else progress
    for _, item, _ in _stream(extractor, loader, image_indices=image_indices, progress=progress):
        yield item


# ------------------------------------------------------------ checkpoints
def _describe(value):
    if value is None or isinstance(value, str):
        return str(value)
    text = repr(value)
    if " at 0x" in text:  # functions and plain objects: the name, not the address
        return f"{type(value).__module__}.{getattr(value, '__qualname__', type(value).__qualname__)}"
    return text


def _fingerprint(extractor, *, mode, rank, world_size):
    """Settings the accumulated statistics depend on (plain types)."""
    module = extractor.backbone_.module
    n_parameters, total = 0, 0.0
    with torch.no_grad():
        for parameter in module.parameters():
            n_parameters += parameter.numel()
            total += float(parameter.detach().double().sum())
    fingerprint = {
        "backbone": f"{type(extractor.backbone_).__name__}({type(module).__name__})",
        "n_parameters": n_parameters,
        # rounded: a sum over the weights on another device may differ in the last digits
        "parameter_sum": f"{total:.6g}",
        "layer": extractor.layer_,
        "sigma": float(extractor.sigma),
        "n_views": int(extractor.n_views),
        "n_features": int(extractor.n_features_out_),
        "augment": _describe(extractor.augment),
        "pooling": _describe(extractor.pooling),
        "precision": extractor.precision,
        "image_indices": mode,
        "rank": rank,
        "world_size": world_size,
    }
    augment = extractor.augment
    if callable(augment) and type(augment).__module__.split(".")[0] != "skicr":
        # a plain augmentation callable is seeded per chunk: chunks must match
        fingerprint["batch_size"] = int(extractor.batch_size)
    return fingerprint


def _rank_path(path, rank, world_size):
    path = Path(path)
    if world_size > 1:
        path = path.with_name(f"{path.stem}.rank{rank}{path.suffix}")
    return path


def _plain(value):
    """Tensors and Python scalars only: what ``torch.load(weights_only=True)`` reads back."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def _save_checkpoint(path, *, fingerprint, base_seed, n_batches, digest, statistics, complete):
    state = {
        "format": _CHECKPOINT_FORMAT,
        "fingerprint": fingerprint,
        "base_seed": int(base_seed),
        "n_batches": int(n_batches),
        "digest": digest,
        "complete": bool(complete),
        "statistics": {key: _plain(value) for key, value in statistics.state_dict().items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a kill never leaves a half-written checkpoint


def _load_checkpoint(path):
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"Could not read the checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a skicr streaming checkpoint ({_CHECKPOINT_FORMAT}).")
    state["statistics"] = GroupedViewStatistics.from_state_dict({
        key: value.numpy() if isinstance(value, torch.Tensor) else value
        for key, value in state["statistics"].items()
    })
    return state


def _check_fingerprint(path, saved, current):
    differences = [
        f"{key}: checkpoint {saved.get(key)!r}, now {current.get(key)!r}"
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key)
    ]
    if differences:
        raise ValueError(
            f"The checkpoint {path} was accumulated with other settings; "
            + "; ".join(differences)
            + ". Use the original settings, or another checkpoint path to start over."
        )


# ----------------------------------------------------------- distributed
def _resolve_distributed(distributed, group):
    import torch.distributed as dist

    if distributed not in ("auto", True, False):
        raise ValueError(f"distributed must be 'auto', True or False; got {distributed!r}.")
    initialised = dist.is_available() and dist.is_initialized()
    if distributed == "auto":
        distributed = initialised
    if distributed and not initialised:
        raise RuntimeError(
            "distributed=True but torch.distributed is not initialised; call "
            "torch.distributed.init_process_group first (torchrun sets up the environment)."
        )
    if not distributed:
        return False, 0, 1
    return True, dist.get_rank(group), dist.get_world_size(group)


def _broadcast_seed(seed, group):
    import torch.distributed as dist

    value = torch.tensor([seed], dtype=torch.int64, device=collective_device(group))
    dist.broadcast(value, src=dist.get_global_rank(group, 0) if group is not None else 0, group=group)
    return int(value.item())


def _check_positive(name, value):
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")


# --------------------------------------------------------------- drivers
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
        the same batches in the same order (no unseeded shuffling).
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
    """
    _check_positive("checkpoint_every", checkpoint_every)
    distributed, rank, world_size = _resolve_distributed(distributed, group)
    progress = (extractor.progress if progress is None else progress) and rank == 0

    state = None
    path = None if checkpoint is None else _rank_path(checkpoint, rank, world_size)
    if path is not None and path.exists():
        state = _load_checkpoint(path)
    if isinstance(extractor.random_state, Integral):
        base_seed = extractor._base_seed()
    else:
        # None or a RandomState: one seed for the whole stream, the checkpoint's on resume
        base_seed = state["base_seed"] if state is not None else extractor._base_seed()
        if distributed:
            base_seed = _broadcast_seed(base_seed, group)
    if state is not None and state["base_seed"] != base_seed:
        raise ValueError(
            f"The checkpoint {path} was accumulated with base seed {state['base_seed']} but the "
            f"extractor now gives {base_seed} (another random_state?)."
        )

    statistics = GroupedViewStatistics() if state is None else state["statistics"]
    n_batches = 0 if state is None else state["n_batches"]
    skip = n_batches
    digest = None if state is None else state["digest"]
    fingerprint = None
    updating = False

    def on_ready(mode):
        nonlocal fingerprint
        if path is not None:
            fingerprint = _fingerprint(extractor, mode=mode, rank=rank, world_size=world_size)
            if state is not None:
                _check_fingerprint(path, state["fingerprint"], fingerprint)

    def save(complete=False):
        _save_checkpoint(path, fingerprint=fingerprint, base_seed=base_seed, n_batches=n_batches,
                         digest=digest, statistics=statistics, complete=complete)

    stream = _stream(
        extractor, loader, base_seed=base_seed, image_indices=image_indices, skip=skip,
        resume_digest=digest, hasher=None if path is None else hashlib.blake2b(digest_size=16),
        progress=progress, on_ready=on_ready,
    )
    try:
        for _, item, hasher in stream:
            updating = True
            if len(item.indices):
                statistics.update(item.views)
            n_batches += 1
            digest = None if hasher is None else hasher.hexdigest()
            updating = False
            if path is not None and n_batches % checkpoint_every == 0:
                save()
    except BaseException:
        # keep what was accumulated (unless the failure hit the update itself)
        if path is not None and fingerprint is not None and not updating and n_batches > skip:
            save()
        raise
    if path is not None and fingerprint is not None and n_batches > skip:
        save(complete=True)

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
    from ..decomposition import InvariantResidualDecomposer

    if decomposer is None:
        decomposer = InvariantResidualDecomposer()
    if not isinstance(decomposer, InvariantResidualDecomposer):
        raise TypeError(
            f"decomposer must be an InvariantResidualDecomposer or None; got {type(decomposer).__name__}."
        )
    decomposer._validate_params()
    decomposer._check_streaming_estimator("fit_from_loader")  # before hours of extraction
    if decomposer.n_views is not None and decomposer.n_views != extractor.n_views:
        raise ValueError(
            f"decomposer.n_views={decomposer.n_views} but the extractor makes {extractor.n_views} views."
        )
    statistics = statistics_from_loader(
        extractor, loader, distributed=distributed, group=group, image_indices=image_indices,
        checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
    )
    return decomposer.fit_statistics(statistics)
