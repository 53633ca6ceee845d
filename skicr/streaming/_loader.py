"""Loader batches -> views: batch parsing, image numbering, the stream of views.

Image numbering: every image's augmentation and noise are seeded by its
global number (see :class:`~skicr.extraction.FeatureExtractor`). By default an
image's number is its position in the stream. Under a
:class:`~torch.utils.data.distributed.DistributedSampler` it is the image's
dataset index, taken from the sampler, so the shards of all ranks together
carry the same views as one process reading the dataset in order.
"""

import itertools
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from .._utils.images import ImageBatches, check_images
from ..extraction import iter_view_chunks

__all__ = ["LoaderViews", "iter_loader_views"]

_IMAGE_KEYS = ("image", "images", "pixel_values")
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

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from skicr.extraction import FeatureExtractor, iter_loader_views
    >>> from skicr.models import SmallUNet
    >>> dataset = TensorDataset(torch.rand(6, 1, 16, 16), torch.arange(6))
    >>> extractor = FeatureExtractor(SmallUNet(channels=(8, 16), mid_channels=16),
    ...                              layer="mid", n_views=2, random_state=0)
    >>> item = next(iter_loader_views(extractor, DataLoader(dataset, batch_size=4)))
    >>> item.views.shape, item.indices.tolist()
    ((4, 2, 16), [0, 1, 2, 3])
    >>> item.batch[1][item.keep].tolist()      # the labels of the kept images
    [0, 1, 2, 3]
    """

    views: np.ndarray
    indices: np.ndarray
    keep: np.ndarray
    batch: object


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


def _prepare(extractor, batch, number, base_seed):
    """Fit the extractor on its first batch if needed; the run's checked settings."""
    if not _is_fitted(extractor):
        extractor.fit(_checked_batch(batch, number, None).data)
    return extractor.view_spec(base_seed=base_seed, progress=False)


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
    spec = None
    number = -1
    for number, batch in enumerate(tqdm(loader, total=_length(loader), disable=not progress,
                                        unit="batch", desc="extracting views")):
        if spec is None:
            spec = _prepare(extractor, batch, number, base_seed)
            if on_ready is not None:
                on_ready(numbering.mode)
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
            for start, stop, features in iter_view_chunks(
                extractor.backbone_, images, (layer,), spec, indices=indices
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
        :class:`~skicr.FeatureExtractor` accepts), tuples or lists whose first
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
    augmentations (the default, any
    :class:`~skicr.extraction.ViewAugmentation`, None); a plain augmentation
    callable is seeded once per chunk, so its draws depend on how the stream
    is cut into batches.

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
