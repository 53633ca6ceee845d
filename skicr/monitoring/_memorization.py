"""Memorization ratio of generated samples (Gu et al. 2023, sail-sg/DiffMemorize)."""

from numbers import Integral, Real

import numpy as np
from sklearn.neighbors import NearestNeighbors
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

__all__ = ["memorization_ratio", "nearest_training_neighbors"]


def _as_samples(data, name):
    """``data`` as a float64 ndarray with a leading sample axis, checked finite."""
    if hasattr(data, "detach"):  # torch tensor, without importing torch
        data = data.detach().cpu().numpy()
    try:
        arr = np.asarray(data)
    except (TypeError, ValueError) as exc:  # ragged lists
        raise ValueError(f"{name} could not be read as an array: {exc}") from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
    ):
        raise ValueError(f"{name} must hold numbers; got dtype {arr.dtype}.")
    if arr.ndim < 2:
        raise ValueError(
            f"{name} must have shape (n_samples, ...) with at least 2 dimensions "
            f"(e.g. images (n, C, H, W) or features (n, d)); got shape {arr.shape}."
        )
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def _embed(samples, space, name):
    """Rows of ``samples`` in the space where distances are measured: (n, d)."""
    if space == "pixel":
        return samples.reshape(samples.shape[0], -1)
    embedded = space(samples)
    embedded = _as_samples(embedded, f"space({name})")
    if embedded.ndim != 2 or embedded.shape[0] != samples.shape[0]:
        raise ValueError(
            f"space must map {samples.shape[0]} samples to an array of shape "
            f"({samples.shape[0]}, n_features); got {embedded.shape} for {name}."
        )
    return embedded


@validate_params(
    {
        "generated": ["array-like"],
        "training": ["array-like"],
        "space": [StrOptions({"pixel"}), callable],
        "n_jobs": [Integral, None],
    },
    prefer_skip_nested_validation=True,
)
def nearest_training_neighbors(generated, training, *, space="pixel", n_jobs=None):
    """Distances and indices of the two nearest training samples of each generated sample.

    Parameters
    ----------
    generated : array-like of shape (n_generated, ...)
        Generated samples (images of any shape, or feature rows), numpy
        arrays or torch tensors.
    training : array-like of shape (n_training, ...)
        Training samples, the same per-sample shape as ``generated``;
        ``n_training >= 2``.
    space : "pixel" or callable, default="pixel"
        ``"pixel"``: Euclidean distances between flattened samples (as
        sail-sg/DiffMemorize). A callable maps an array of samples to
        features ``(n, d)`` (for instance a fitted transformer's
        ``transform``); distances are then Euclidean between features.
    n_jobs : int or None, default=None
        Parallel jobs of :class:`sklearn.neighbors.NearestNeighbors`.

    Returns
    -------
    distances : ndarray of shape (n_generated, 2)
        Distances ``d1 <= d2`` to the nearest and second-nearest training
        sample, recomputed exactly (so an exact copy has ``d1 == 0``).
    indices : ndarray of shape (n_generated, 2)
        Their row indices in ``training``.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.monitoring import nearest_training_neighbors
    >>> training = np.random.default_rng(0).random((20, 1, 4, 4))
    >>> generated = training[[3, 7]] + 0.0                # two exact copies
    >>> distances, indices = nearest_training_neighbors(generated, training)
    >>> indices[:, 0].tolist(), distances[:, 0].tolist()
    ([3, 7], [0.0, 0.0])
    """
    generated = _as_samples(generated, "generated")
    training = _as_samples(training, "training")
    if space == "pixel" and generated.shape[1:] != training.shape[1:]:
        raise ValueError(
            f"generated and training samples must have the same shape; got "
            f"{generated.shape[1:]} (generated) and {training.shape[1:]} (training)."
        )
    if training.shape[0] < 2:
        raise ValueError(
            f"the memorization ratio needs at least 2 training samples (nearest and "
            f"second-nearest); got {training.shape[0]}."
        )
    if generated.shape[0] < 1:
        raise ValueError("generated holds no samples.")
    gen = _embed(generated, space, "generated")
    train = _embed(training, space, "training")
    if gen.shape[1] != train.shape[1]:
        raise ValueError(
            f"space gives {gen.shape[1]} features for generated samples but "
            f"{train.shape[1]} for training samples."
        )
    search = NearestNeighbors(n_neighbors=2, n_jobs=n_jobs).fit(train)
    _, indices = search.kneighbors(gen)
    # brute-force search uses |a|^2 + |b|^2 - 2ab, which leaves ~1e-8 for an exact
    # copy; recompute the two distances directly so copies give exactly 0
    distances = np.linalg.norm(gen[:, None, :] - train[indices], axis=2)
    order = np.argsort(distances, axis=1, kind="stable")
    return np.take_along_axis(distances, order, 1), np.take_along_axis(indices, order, 1)


def _distance_ratios(distances):
    """``d1 / d2`` per sample, 0 for an exact copy (``d1 == 0``, even when ``d2 == 0``)."""
    d1, d2 = distances[:, 0], distances[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d1 == 0, 0.0, d1 / d2)


@validate_params(
    {
        "generated": ["array-like"],
        "training": ["array-like"],
        "threshold": [Interval(Real, 0, 1, closed="right")],
        "space": [StrOptions({"pixel"}), callable],
        "return_ratios": ["boolean"],
        "n_jobs": [Integral, None],
    },
    prefer_skip_nested_validation=True,
)
def memorization_ratio(
    generated, training, threshold=1 / 3, *, space="pixel", return_ratios=False, n_jobs=None
):
    """Fraction of generated samples that copy a training sample.

    A generated sample counts as memorized when ``d1 / d2 < threshold``,
    ``d1`` and ``d2`` its distances to the nearest and second-nearest
    training sample (Gu et al. 2023, "On Memorization in Diffusion Models";
    sail-sg/DiffMemorize measures it on flattened pixels with threshold 1/3).
    The ratio is scale-free: a sample far closer to one training image than
    to any other is a near-copy of it. An exact copy (``d1 = 0``) counts as
    memorized even when that training image is duplicated (``d2 = 0``, the
    ratio 0/0 is taken as 0).

    Parameters
    ----------
    generated : array-like of shape (n_generated, ...)
        Generated samples: images (any shape, e.g. (n, C, H, W) in [0, 1]) or
        feature rows; numpy arrays or torch tensors.
    training : array-like of shape (n_training, ...)
        The training set, the same per-sample shape; ``n_training >= 2``.
        Use the same value range as ``generated``.
    threshold : float, default=1/3
        Memorized when ``d1 / d2 < threshold`` (strictly); in (0, 1].
    space : "pixel" or callable, default="pixel"
        ``"pixel"``: Euclidean distances between flattened samples. A callable
        maps an array of samples to features ``(n, d)`` (for instance a
        fitted :class:`~skicr.FeatureExtractor` feature map or any
        embedding); distances are measured there.
    return_ratios : bool, default=False
        Also return the per-sample ratios ``d1 / d2``.
    n_jobs : int or None, default=None
        Parallel jobs of the nearest-neighbour search.

    Returns
    -------
    ratio : float
        Fraction of generated samples with ``d1 / d2 < threshold``, in [0, 1].
    ratios : ndarray of shape (n_generated,)
        ``d1 / d2`` per generated sample; only when ``return_ratios=True``.

    See Also
    --------
    nearest_training_neighbors : the distances and indices behind the ratio.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.monitoring import memorization_ratio
    >>> training = np.random.default_rng(0).random((50, 1, 8, 8))
    >>> copies = training[:10] + 0.001     # near-copies of 10 training images
    >>> memorization_ratio(copies, training)
    1.0
    >>> fresh = np.random.default_rng(1).random((10, 1, 8, 8))
    >>> memorization_ratio(fresh, training)
    0.0
    """
    distances, _ = nearest_training_neighbors(generated, training, space=space, n_jobs=n_jobs)
    ratios = _distance_ratios(distances)
    fraction = float(np.mean(ratios < threshold))
    if return_ratios:
        return fraction, ratios
    return fraction
