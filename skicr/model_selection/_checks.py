"""Checks of the selector's inputs, before any backbone runs."""

import os
import warnings
from contextlib import contextmanager

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, check_cv
from sklearn.utils.validation import _num_samples, column_or_1d

from .._utils.validation import check_layer_list, check_layer_names

__all__ = ["few_label_splits", "few_label_accuracy"]

#: scikit-learn's mark of an unlabelled sample (sklearn.semi_supervised)
UNLABELLED = -1
#: at most this many (train, test) splits of the few-labels probe
MAX_FEW_LABEL_SPLITS = 5


def check_images_and_labels(images, y, scoring, probe):
    """The number of images, the labels as 1-D, and the probe actually used (None without labels)."""
    try:
        n_images = _num_samples(images)
    except TypeError as exc:
        raise ValueError(
            f"images must be an array-like with one row per image; got {type(images).__name__}."
        ) from exc
    if n_images < 2:
        raise ValueError(f"need at least 2 images to measure an ICR; got {n_images}.")
    if y is not None:
        y = column_or_1d(y, warn=True)
        if y.shape[0] != n_images:
            raise ValueError(
                f"y has {y.shape[0]} labels but there are {n_images} images; "
                "give one label per image."
            )
    if scoring == "probe" and (probe is None or y is None):
        raise ValueError('scoring="probe" needs both a probe and labels y.')
    if probe is not None and y is None and scoring != "probe":
        warnings.warn(
            "a probe was given but no labels y: the probe accuracy is not measured.",
            UserWarning,
            stacklevel=3,
        )
    return n_images, y, (probe if y is not None else None)


def check_layers(layers, extractor):
    """The candidate layers as a list of distinct names (None: the extractor's own layer)."""
    if layers is None:
        return None
    layers = check_layer_names(layers)
    if not callable(getattr(extractor, "transform_layer_views", None)):
        raise ValueError(
            f"layers needs an extractor with a transform_layer_views(images, layers) method "
            f"(e.g. skicr.FeatureExtractor); {type(extractor).__name__} has none."
        )
    if "layer" not in extractor.get_params(deep=False):
        raise ValueError(
            f"layers needs an extractor with a 'layer' parameter; "
            f"{type(extractor).__name__} has none."
        )
    return layers


@contextmanager
def shared_backbone(extractor, layers):
    """Resolve a FeatureExtractor's backbone once for the whole grid; check ``layers`` on it.

    Cheap (no forward pass): unknown layer names fail here, with close
    matches, rather than inside the first grid task. While the block runs the
    adapter stays referenced, so a model loaded from a path is found in the
    loader's cache by every clone of the extractor instead of being loaded
    once per sigma.
    """
    from ..extraction import FeatureExtractor, as_backbone

    if not isinstance(extractor, FeatureExtractor) or (
        layers is None and not isinstance(extractor.backbone, (str, os.PathLike))
    ):
        yield None  # nothing to check or to share
        return
    backbone = as_backbone(extractor.backbone)
    if layers is not None:
        check_layer_list(backbone, layers)
    yield backbone


def distinct_grid(sigmas, extractor):
    """Grid points the extractor's backbone can tell apart.

    A VP/DDPM backbone runs a sigma at the timestep whose noise level is
    nearest (in log sigma), so grid points sharing a timestep are one point;
    of each such group the sigma nearest the timestep's own is kept. Other
    backbones (and extractors that are not a FeatureExtractor) keep the grid.

    Returns
    -------
    keep : ndarray of int
        Indices of the kept grid points, in grid order.
    clamped : dict
        ``{dropped sigma: kept sigma}``; empty when every point is distinct.
    """
    from ..extraction import FeatureExtractor, as_backbone

    if not isinstance(extractor, FeatureExtractor):
        return np.arange(sigmas.size), {}
    backbone = as_backbone(extractor.backbone)
    if not callable(getattr(backbone, "timestep", None)):
        return np.arange(sigmas.size), {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # out-of-range sigmas: the extractor says it per sigma
        steps = np.array([backbone.timestep(float(s), warn=False) for s in sigmas])
        reached = np.array([backbone.sigma_at(int(t)) for t in steps])
    keep, clamped = [], {}
    for step in dict.fromkeys(steps.tolist()):
        group = np.flatnonzero(steps == step)
        kept = group[np.argmin(np.abs(np.log(sigmas[group]) - np.log(reached[group[0]])))]
        keep.append(int(kept))
        clamped.update({float(sigmas[i]): float(sigmas[kept]) for i in group if i != kept})
    return np.array(sorted(keep)), clamped


def make_splits(cv, n_images, y, groups, split_seed):
    """The (train, test) folds shared by every sigma, or None for no split."""
    if cv is None or (isinstance(cv, int) and not isinstance(cv, bool) and cv == 1):
        return None
    if isinstance(cv, int) and not isinstance(cv, bool):
        splitter = KFold(n_splits=cv, shuffle=True, random_state=split_seed)
    else:
        splitter = check_cv(cv)
    placeholder = np.zeros((n_images, 1))
    splits = [
        (np.asarray(train), np.asarray(test))
        for train, test in splitter.split(placeholder, y, groups)
    ]
    if not splits:
        raise ValueError("cv produced no (train, test) split.")
    return splits


def _labelled_mask(y):
    """True where ``y`` holds a label (not scikit-learn's -1 for "unlabelled")."""
    y = np.asarray(y)
    if y.dtype.kind in "iuf":
        return y != UNLABELLED
    return np.ones(y.shape[0], dtype=bool)


def few_label_splits(y, n_labels_per_class, random_state=None):
    """The probe's (train, test) splits when only a few images per class may be labelled.

    Draws ``n_labels_per_class`` labelled images of every class (seeded),
    then, with ``n_labels_per_class >= 2``, splits the drawn images into
    ``min(n_labels_per_class, 5)`` stratified folds (with up to 5 per class,
    each fold holds out one drawn image per class and trains on the other
    drawn images). With one image per class nothing can be held out:
    the one split trains and tests on the same images, and the few-labels
    probe of :class:`~skicr.NoiseLevelSelector` then trains on their views
    1..V-1 and tests on view 0 (an optimistic, view-transfer estimate).

    Parameters
    ----------
    y : array-like of shape (n_images,)
        Class labels; ``-1`` marks an unlabelled image (scikit-learn's
        semi-supervised convention), never drawn.
    n_labels_per_class : int
        Labelled images per class to use (>= 1); every class needs at least
        that many labelled images.
    random_state : int, RandomState instance or None, default=None
        Seeds the draw.

    Returns
    -------
    splits : list of (ndarray, ndarray)
        Image indices (into ``y``) of each split's training and test images.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.model_selection import few_label_splits
    >>> y = np.array([0, 0, 0, 1, 1, 1, -1, -1])
    >>> splits = few_label_splits(y, 2, random_state=0)
    >>> len(splits), [len(test) for _, test in splits]
    (2, [2, 2])
    >>> sorted(set(y[np.concatenate([train for train, _ in splits])].tolist()))
    [0, 1]
    """
    from sklearn.utils import check_random_state

    y = column_or_1d(y)
    if isinstance(n_labels_per_class, bool) or int(n_labels_per_class) != n_labels_per_class \
            or n_labels_per_class < 1:
        raise ValueError(f"n_labels_per_class must be an int >= 1; got {n_labels_per_class!r}.")
    n_labels_per_class = int(n_labels_per_class)
    labelled = np.flatnonzero(_labelled_mask(y))
    classes, counts = np.unique(y[labelled], return_counts=True)
    if classes.size < 2:
        raise ValueError(f"a probe needs labelled images of at least 2 classes; got {classes.size}.")
    short = {str(c): int(n) for c, n in zip(classes, counts) if n < n_labels_per_class}
    if short:
        raise ValueError(
            f"n_labels_per_class={n_labels_per_class} but some classes have fewer labelled "
            f"images: {short}."
        )
    rng = check_random_state(random_state)
    drawn = np.stack([np.sort(rng.choice(labelled[y[labelled] == c], n_labels_per_class,
                                         replace=False)) for c in classes])  # (classes, k)
    if n_labels_per_class == 1:
        images = np.sort(drawn[:, 0])
        return [(images, images.copy())]
    images = drawn.ravel()
    folds = StratifiedKFold(n_splits=min(n_labels_per_class, MAX_FEW_LABEL_SPLITS), shuffle=True,
                            random_state=rng.randint(np.iinfo(np.int32).max))
    return [(np.sort(images[train]), np.sort(images[test]))
            for train, test in folds.split(images, y[images])]


def few_label_accuracy(views, y, probe, splits, probe_features="first_view"):
    """Accuracy of a probe trained and tested on a few labelled images' views.

    The few-labels estimate of :class:`~skicr.NoiseLevelSelector`
    (``n_labels_per_class``): on each split of :func:`few_label_splits`, the
    probe is trained on views 1..V-1 of the split's training images (every
    view is a labelled example of the image's class) and tested on view 0
    of its test images, i.e. on one augmented noisy view, what a downstream
    user gets from one forward pass. With ``probe_features="view_mean"``
    it is trained and tested on the images' mean over the views.

    Parameters
    ----------
    views : array-like of shape (n_images, n_views, n_features)
        Grouped views of all images (``n_views >= 2``).
    y : array-like of shape (n_images,)
        Labels (only those of the split images are read).
    probe : classifier
        Cloned and fitted on every split.
    splits : list of (ndarray, ndarray)
        Image indices, e.g. from :func:`few_label_splits`.
    probe_features : {"first_view", "view_mean"}, default="first_view"
        What the probe sees (see above).

    Returns
    -------
    accuracy : list of float
        One accuracy per split.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skicr.model_selection import few_label_accuracy, few_label_splits
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 50)
    >>> views = y[:, None, None] * 3.0 + rng.normal(size=(100, 4, 2))
    >>> splits = few_label_splits(y, 2, random_state=0)
    >>> few_label_accuracy(views, y, LogisticRegression(), splits)
    [1.0, 1.0]
    """
    from sklearn.base import clone

    views = np.asarray(views)
    y = np.asarray(y)
    if views.ndim != 3 or views.shape[1] < 2 or views.shape[0] != y.shape[0]:
        raise ValueError(
            f"views must be (n_images={y.shape[0]}, n_views >= 2, n_features); got {views.shape}."
        )
    n_views, d = views.shape[1], views.shape[2]
    accuracy = []
    for train, test in splits:
        if probe_features == "first_view":
            train_X = views[train, 1:, :].reshape(-1, d)
            train_y = np.repeat(y[train], n_views - 1)
            test_X = views[test, 0, :]
        else:
            train_X, train_y, test_X = views[train].mean(axis=1), y[train], views[test].mean(axis=1)
        fitted = clone(probe).fit(train_X, train_y)
        accuracy.append(float(np.mean(fitted.predict(test_X) == y[test])))
    return accuracy
