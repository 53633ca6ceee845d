"""Per-fold statistics of a loader at one noise level: the streaming core of a noise-level scan.

Every image belongs to one cross-validation fold (by its global number, see
:mod:`skicr.streaming`); each batch's views update the accumulator of each
image's fold, so memory holds ``K`` accumulators (``O(K d^2)``) and one batch,
whatever the number of images. A fold's training statistics are the merge of
the other folds', its held-out statistics its own.
"""

import hashlib
import time
from collections.abc import Mapping
from numbers import Integral
from typing import NamedTuple

import numpy as np
import torch

from .._utils.distributed import collective_device
from .._utils.serialization import atomic_torch_save, read_torch_file, seal, verify_seal
from ..metrics import GroupedViewStatistics
from ._checkpoint import _check_statistics, _CheckpointedStream, _damaged
from ._loader import _checked_batch, _is_fitted, _Numbering

__all__ = ["FoldStatistics", "fold_statistics_from_loader"]

_FOLDS_FORMAT = "skicr.streaming.folds.v1"
_LABEL_KEYS = ("label", "labels", "target", "targets", "y")
PROBE_FEATURES = ("first_view", "view_mean")


class FoldStatistics(NamedTuple):
    """What :func:`fold_statistics_from_loader` accumulated at one noise level.

    Attributes
    ----------
    statistics : list of GroupedViewStatistics
        One accumulator per fold (summed over all ranks when distributed).
    features : ndarray of shape (n_images, d) or None
        The probe's features of every image (float32, row = image number),
        only when ``probe_features`` was given; rows of images the loader
        never yielded are zero (``seen`` is False there).
    labels : ndarray of shape (n_images,) or None
        Labels read from the batches (int64; -1 where unseen), only when
        ``collect_labels`` was set.
    seen : ndarray of shape (n_images,) or None
        How many times each image was seen (int64), with ``features`` or
        ``labels``.
    extract_time : float
        Seconds this call spent reading and extracting (0 for a finished
        checkpoint reused as it is).
    """

    statistics: list
    features: object
    labels: object
    seen: object
    extract_time: float


def _batch_labels(batch, number):
    """The labels of a loader batch: its second element, or a label key of a dict."""
    if isinstance(batch, Mapping):
        for key in _LABEL_KEYS:
            if key in batch:
                return batch[key]
    elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[1]
    raise ValueError(
        f"Batch {number} of the loader carries no labels: expected (images, labels) tuples or a "
        f"dict with one of the keys {list(_LABEL_KEYS)}."
    )


def _labels_array(labels, number, n_rows):
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels).ravel()
    if labels.shape[0] != n_rows or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"Batch {number} of the loader: labels must be {n_rows} integers, one per image; got "
            f"shape {labels.shape}, dtype {labels.dtype}."
        )
    return labels.astype(np.int64)


def _folds_digest(folds):
    return hashlib.blake2b(np.ascontiguousarray(folds, dtype=np.int64).tobytes(), digest_size=16).hexdigest()


def _save(path, *, fingerprint, base_seed, n_batches, digest, complete, statistics, folds_digest,
          kept):
    """One checkpoint: every fold's statistics and the kept probe rows (this rank's)."""
    indices, features, labels = kept.arrays()
    state = {
        "format": _FOLDS_FORMAT,
        "fingerprint": fingerprint,
        "base_seed": int(base_seed),
        "n_batches": int(n_batches),
        "digest": digest,
        "complete": bool(complete),
        "folds": folds_digest,
        "statistics": [
            {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in s.state_dict().items()}
            for s in statistics
        ],
        "indices": torch.from_numpy(indices),
        "features": torch.from_numpy(features),
        "labels": torch.from_numpy(labels),
    }
    atomic_torch_save(seal(state), path)


def _load(path, n_folds, folds_digest):
    state = read_torch_file(path, "skicr fold-statistics checkpoint")
    if not isinstance(state, dict) or state.get("format") != _FOLDS_FORMAT:
        raise ValueError(f"{path} is not a skicr fold-statistics checkpoint ({_FOLDS_FORMAT}).")
    state = verify_seal(state, path, "checkpoint")
    kinds = {"fingerprint": dict, "base_seed": Integral, "n_batches": Integral, "digest": (str, type(None)),
             "complete": bool, "folds": str, "statistics": list, "indices": torch.Tensor,
             "features": torch.Tensor, "labels": torch.Tensor}
    for key, kind in kinds.items():
        if key not in state:
            raise _damaged(path, f"the entry {key!r} is missing")
        if not isinstance(state[key], kind) or (kind is Integral and isinstance(state[key], bool)):
            raise _damaged(path, f"{key!r} is a {type(state[key]).__name__}")
    if state["n_batches"] < 0:
        raise _damaged(path, f"n_batches = {state['n_batches']} is negative")
    if state["folds"] != folds_digest:
        raise ValueError(
            f"The checkpoint {path} was accumulated with other cross-validation folds (another cv, "
            "random_state or number of images); use the original settings, or another checkpoint "
            "path to start over."
        )
    if len(state["statistics"]) != n_folds:
        raise _damaged(path, f"it holds {len(state['statistics'])} fold statistics, not {n_folds}")
    statistics = []
    for stats in state["statistics"]:
        if not isinstance(stats, dict):
            raise _damaged(path, "a fold's statistics are not a dict")
        _check_statistics(path, stats, state["n_batches"])
        statistics.append(GroupedViewStatistics.from_state_dict(
            {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in stats.items()}
        ))
    state["statistics"] = statistics
    n_kept = state["indices"].shape[0]
    if (state["indices"].ndim != 1 or state["labels"].shape != (n_kept,)
            or state["features"].ndim != 2 or state["features"].shape[0] != n_kept):
        raise _damaged(path, "the kept probe rows have inconsistent shapes")
    return state


class _Kept:
    """This rank's probe rows (image numbers, features, labels), batch by batch."""

    def __init__(self, state=None):
        self.parts = []
        if state is not None and state["indices"].shape[0]:
            self.parts.append((state["indices"].numpy(), state["features"].numpy(), state["labels"].numpy()))

    def add(self, indices, features, labels):
        self.parts.append((indices, features, labels))

    def arrays(self, d=0):
        if not self.parts:
            return np.zeros(0, np.int64), np.zeros((0, d), np.float32), np.zeros(0, np.int64)
        indices, features, labels = zip(*self.parts)
        self.parts = [(np.concatenate(indices), np.concatenate(features), np.concatenate(labels))]
        return self.parts[0]


def _gather_rows(kept, n_images, d, keep_features, distributed, group):
    """Features, labels and seen counts of every image (summed over ranks: one all-reduce each)."""
    indices, features, labels = kept.arrays(d)
    seen = np.bincount(indices, minlength=n_images).astype(np.int64)
    all_features = np.zeros((n_images, d), np.float32) if keep_features else None
    all_labels = np.zeros(n_images, np.int64)
    if keep_features and len(indices):
        all_features[indices] = features
    np.add.at(all_labels, indices, labels + 1)  # 0 = unseen
    if distributed:
        import torch.distributed as dist

        device = collective_device(group)
        for array in (seen, all_labels) + ((all_features,) if keep_features else ()):
            tensor = torch.from_numpy(array).to(device)
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
            array[...] = tensor.cpu().numpy()
    all_labels = np.where(seen == 1, all_labels - 1, -1)
    return all_features, all_labels, seen


def fold_statistics_from_loader(
    extractor,
    loader,
    folds,
    *,
    probe_features=None,
    collect_labels=False,
    distributed="auto",
    group=None,
    image_indices="auto",
    checkpoint=None,
    checkpoint_every=50,
    progress=None,
):
    """Grouped-view statistics of each cross-validation fold of a loader's images, streamed.

    Each batch's views are extracted and each image's views update the
    accumulator of its fold (``folds[image number]``), then are dropped:
    memory holds ``n_folds`` accumulators of ``O(d^2)`` and one batch. A
    fold's training statistics are the merge of the other folds'
    (:meth:`~skicr.metrics.GroupedViewStatistics.merge`), its held-out
    statistics its own. Under ``torch.distributed`` each rank reads its
    shard and all folds are summed with one all-reduce
    (:meth:`~skicr.metrics.GroupedViewStatistics.all_reduce_many`); every
    rank returns the totals.

    Parameters
    ----------
    extractor : FeatureExtractor
        At the noise level to measure; fitted on the first batch if needed.
    loader : iterable
        Batches of images, as for :func:`statistics_from_loader`; with
        ``collect_labels`` they must carry labels (``(images, labels)`` or a
        dict with a ``"label"`` key).
    folds : array-like of int, shape (n_images,)
        The fold of every image number, ``0 .. n_folds - 1``; the same at
        every noise level of a scan.
    probe_features : {"first_view", "view_mean"} or None, default=None
        Also keep, per image, the features a probe sees (the first view's, or
        the mean of the views): ``n_images x d`` float32, the only part of
        the memory that grows with the images (small once pooled).
    collect_labels : bool, default=False
        Read the labels from the batches.
    distributed : {"auto", True, False}, default="auto"
        Sum across the processes of ``group``; ``"auto"``: when
        ``torch.distributed`` is initialised.
    group : torch.distributed.ProcessGroup or None, default=None
        Process group; the default group when None.
    image_indices : {"auto", "position"}, default="auto"
        Image numbering; see :func:`iter_loader_views`.
    checkpoint : str, path or None, default=None
        File to save the accumulated fold statistics (and kept probe rows) to
        every ``checkpoint_every`` batches, on an interruption and at the
        end; an existing file is resumed as :func:`statistics_from_loader`
        resumes (batches already accumulated are read, checked against a hash
        and skipped). A finished checkpoint is returned without reading the
        loader again (one batch is read to fit an unfitted extractor). Its
        settings, seed and folds must match (clear error otherwise); each rank
        uses ``<stem>.rank<r><suffix>`` when distributed.
    checkpoint_every : int, default=50
        Batches between checkpoints.
    progress : bool or None, default=None
        Progress bar over loader batches (rank 0 only); None uses
        ``extractor.progress``.

    Returns
    -------
    result : FoldStatistics
        ``statistics`` (one per fold), ``features``, ``labels``, ``seen``,
        ``extract_time``.

    See Also
    --------
    statistics_from_loader : The statistics of all images (one fold).
    skicr.model_selection.StreamingNoiseLevelSelector : A noise-level scan built on this.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from torch.utils.data import DataLoader
    >>> from skicr.extraction import FeatureExtractor
    >>> from skicr.metrics import accumulate
    >>> from skicr.models import SmallUNet
    >>> from skicr.streaming import fold_statistics_from_loader
    >>> images = torch.rand(12, 1, 16, 16)
    >>> extractor = FeatureExtractor(SmallUNet(channels=(8, 16), mid_channels=16),
    ...                              layer="mid", n_views=2, random_state=0)
    >>> folds = np.arange(12) % 3
    >>> result = fold_statistics_from_loader(extractor, DataLoader(images, batch_size=5), folds)
    >>> [s.n_images for s in result.statistics]
    [4, 4, 4]
    >>> views = extractor.transform_views(images.numpy())
    >>> bool(np.allclose(result.statistics[1].residual_scatter,
    ...                  accumulate(views[folds == 1]).residual_scatter))
    True
    """
    folds = np.asarray(folds)
    if folds.ndim != 1 or folds.size < 1 or not np.issubdtype(folds.dtype, np.integer) or folds.min() < 0:
        raise ValueError("folds must be a 1-D array of fold numbers >= 0, one per image.")
    folds = folds.astype(np.int64)
    n_images, n_folds = folds.size, int(folds.max()) + 1
    if probe_features is not None and probe_features not in PROBE_FEATURES:
        raise ValueError(f"probe_features must be one of {PROBE_FEATURES} or None; got {probe_features!r}.")
    folds_digest = _folds_digest(folds)
    stream = _CheckpointedStream(
        extractor, checkpoint, load=lambda path: _load(path, n_folds, folds_digest),
        distributed=distributed, group=group, progress=progress, checkpoint_every=checkpoint_every,
    )
    distributed, rank, state = stream.distributed, stream.rank, stream.state

    statistics = [GroupedViewStatistics() for _ in range(n_folds)] if state is None else state["statistics"]
    kept = _Kept(state)
    keep_rows = probe_features is not None or collect_labels

    def update(number, item):
        indices = item.indices
        if len(indices) and indices.max() >= n_images:
            raise ValueError(
                f"Batch {number} of the loader holds image number {int(indices.max())} but "
                f"folds has {n_images} entries; give one fold per image of the dataset."
            )
        if len(indices):
            image_folds = folds[indices]
            for k in np.unique(image_folds):
                statistics[k].update(item.views[image_folds == k])
        if keep_rows and len(indices):
            labels = np.full(len(indices), -1, np.int64)
            if collect_labels:
                labels = _labels_array(_batch_labels(item.batch, number), number,
                                       item.keep.size)[item.keep]
            if probe_features == "first_view":
                features = item.views[:, 0, :]
            elif probe_features == "view_mean":
                features = item.views.astype(np.float64).mean(axis=1).astype(np.float32)
            else:
                features = np.zeros((len(indices), 0), np.float32)
            kept.add(indices.astype(np.int64), np.ascontiguousarray(features, np.float32), labels)

    def save(path, **position):
        _save(path, statistics=statistics, folds_digest=folds_digest, kept=kept, **position)

    start = time.perf_counter()
    if state is not None and state["complete"]:
        # a finished fold set: no extraction, one batch at most to fit the extractor
        if not _is_fitted(extractor):
            for batch in loader:
                extractor.fit(_checked_batch(batch, 0, None).data)
                break
        stream.fingerprint(_Numbering(loader, image_indices).mode)
        extract_time = 0.0
    else:
        stream.run(loader, update=update, save=save, image_indices=image_indices)
        extract_time = time.perf_counter() - start

    d = next((s.n_features for s in statistics if s.n_features is not None), None)
    if d is None:
        if not _is_fitted(extractor):
            raise RuntimeError(
                f"Rank {rank} received no batches and its extractor is not fitted, so the feature "
                "width is unknown; fit the extractor first."
            )
        d = extractor.n_features_out_
    for k, stats in enumerate(statistics):
        if stats.n_features is None:
            statistics[k] = GroupedViewStatistics(d, extractor.n_views)
    if distributed:
        GroupedViewStatistics.all_reduce_many(statistics, group)
    total = sum(s.n_images for s in statistics)
    if total == 0:
        raise ValueError("The loader yielded no images; nothing to measure.")
    if total > n_images:
        raise ValueError(
            f"{total} images were accumulated for {n_images} image numbers: some were counted "
            "more than once (under torch.distributed, give the DataLoader a DistributedSampler "
            "so that each rank reads its own shard)."
        )
    features = labels = seen = None
    if keep_rows:
        features, labels, seen = _gather_rows(kept, n_images, d, probe_features is not None,
                                              distributed, group)
        if not collect_labels:
            labels = None
    return FoldStatistics(statistics, features, labels, seen, extract_time)
