"""Checks of the selector's inputs, before any backbone runs."""

import os
import warnings
from contextlib import contextmanager

import numpy as np
from sklearn.model_selection import KFold, check_cv
from sklearn.utils.validation import _num_samples, column_or_1d

from .._utils.validation import check_layer_list, check_layer_names

__all__ = []


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
