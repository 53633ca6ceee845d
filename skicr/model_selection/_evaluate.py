"""Evaluating one candidate sigma: one backbone pass (all layers), then every fold on its features."""

import time

import numpy as np
from sklearn.base import clone

from ..views import check_grouped_views
from ._checks import few_label_accuracy
from ._decision import COMMON_WIDTH, LABEL_FREE_CRITERIA, LAYER_CRITERIA, fold_criteria

__all__ = []

#: criteria measured on the folds besides the held-out ICR (each gets cv_results_ columns;
#: those of LAYER_CRITERIA only when the scorer measures them)
EXTRA_CRITERIA = [name for name in LABEL_FREE_CRITERIA if name != "icr"]


def _probe_input(views, probe_features):
    """Features the probe sees, one row per image."""
    if probe_features == "first_view":
        return views[:, 0, :]
    return views.mean(axis=1)


def _in_sample_icr(decomposer, views):
    """ICR of ``views`` under a decomposer already fitted on them."""
    icr = getattr(decomposer, "icr_", None)
    if icr is not None:
        return float(icr)
    return -float(decomposer.score(views))


def _check_views(views, n_images, layer=None):
    """Views as float64 (n_images, n_views, d): one row per image, then the grouped-view check."""
    where = "" if layer is None else f" for layer {layer!r}"
    shape = np.shape(views)
    if len(shape) != 3 or shape[0] != n_images:
        raise ValueError(
            f"the extractor must return views of shape (n_images={n_images}, n_views, "
            f"n_features){where}; got {shape}."
        )
    try:
        return check_grouped_views(views, min_images=n_images)
    except ValueError as exc:
        raise ValueError(f"the extracted features{where}: {exc}") from None


class _FoldScorer:
    """What every grid task shares: the decomposer, the probe and the folds.

    Calling it scores one feature set (see :func:`_score_views`).
    ``probe_splits`` (few-labels mode) are the probe's own (train, test)
    image splits within the labelled draw; None: the probe uses ``splits``.
    """

    def __init__(self, decomposer, probe, probe_features, splits, scoring_callable=None, *,
                 layer_criteria=False, common_width=COMMON_WIDTH, probe_splits=None):
        self.decomposer = decomposer
        self.probe = probe
        self.probe_features = probe_features
        self.splits = splits
        self.scoring_callable = scoring_callable
        self.layer_criteria = layer_criteria
        self.common_width = common_width
        self.probe_splits = probe_splits

    def criteria(self):
        """Names of the label-free criteria measured besides the held-out ICR."""
        return [name for name in EXTRA_CRITERIA
                if self.layer_criteria or name not in LAYER_CRITERIA]

    def __call__(self, views, y):
        result = _score_views(views, y, self.decomposer,
                              None if self.probe_splits is not None else self.probe,
                              self.probe_features, self.splits, self.scoring_callable,
                              criteria=self.criteria(), common_width=self.common_width)
        if self.probe is not None and self.probe_splits is not None:
            result.update(_few_label_probe(views, y, self.probe, self.probe_features,
                                           self.probe_splits))
        return result


def _few_label_probe(views, y, probe, probe_features, splits):
    """:func:`few_label_accuracy` with its time, as per-split lists."""
    start = time.perf_counter()
    accuracy = few_label_accuracy(views, y, probe, splits, probe_features)
    seconds = (time.perf_counter() - start) / max(len(splits), 1)
    return {"probe_accuracy": accuracy, "probe_time": [seconds] * len(accuracy)}


def _score_views(views, y, decomposer, probe, probe_features, splits, scoring_callable=None, *,
                 criteria=None, common_width=COMMON_WIDTH):
    """Held-out ICR, the other label-free criteria (and probe accuracy) of one feature set.

    Returns a dict of per-split lists: ``icr``, one list per name of
    ``criteria`` (default: those of ``EXTRA_CRITERIA`` outside
    ``LAYER_CRITERIA``), ``fit_time``, ``score_time``; ``score`` with a
    ``scoring_callable(train_views, test_views)``; and ``probe_accuracy``,
    ``probe_time`` when a probe is given.
    """
    if criteria is None:
        criteria = [name for name in EXTRA_CRITERIA if name not in LAYER_CRITERIA]
    layer_criteria = any(name in LAYER_CRITERIA for name in criteria)
    result = {"icr": [], "fit_time": [], "score_time": []}
    for name in criteria:
        result[name] = []
    if scoring_callable is not None:
        result["score"] = []
    if probe is not None:
        result["probe_accuracy"] = []
        result["probe_time"] = []

    def label_free(train_views, test_views, fitted_decomposer):
        directions = getattr(fitted_decomposer, "components_", None) if layer_criteria else None
        eigenvalues = getattr(fitted_decomposer, "eigenvalues_", None)
        if directions is not None and eigenvalues is not None and len(eigenvalues) != len(directions):
            eigenvalues = None  # fewer components than features: fold_criteria fits its own
        values = fold_criteria(test_views, train_views, directions, common_width,
                               layer_criteria=layer_criteria, eigenvalues=eigenvalues)
        for name in criteria:
            result[name].append(values[name])
        if scoring_callable is not None:
            value = float(scoring_callable(train_views, test_views))
            if not np.isfinite(value):
                raise ValueError(f"the scoring callable returned {value}; it must be finite.")
            result["score"].append(value)

    if splits is None:
        # cv=1: in-sample ICR on all images, no split
        start = time.perf_counter()
        fitted_decomposer = clone(decomposer).fit(views)
        result["fit_time"].append(time.perf_counter() - start)
        start = time.perf_counter()
        result["icr"].append(_in_sample_icr(fitted_decomposer, views))
        result["score_time"].append(time.perf_counter() - start)
        label_free(views, views, fitted_decomposer)
        return result

    probe_X = None if probe is None else _probe_input(views, probe_features)
    for train, test in splits:
        start = time.perf_counter()
        fitted_decomposer = clone(decomposer).fit(views[train])
        result["fit_time"].append(time.perf_counter() - start)
        start = time.perf_counter()
        # the decomposer's score is minus the held-out ICR
        result["icr"].append(-float(fitted_decomposer.score(views[test])))
        result["score_time"].append(time.perf_counter() - start)
        label_free(views[train], views[test], fitted_decomposer)
        if probe is not None:
            start = time.perf_counter()
            fitted_probe = clone(probe).fit(probe_X[train], y[train])
            accuracy = np.mean(fitted_probe.predict(probe_X[test]) == y[test])
            result["probe_accuracy"].append(float(accuracy))
            result["probe_time"].append(time.perf_counter() - start)
    return result


def _extract(extractor, sigma, images, layers):
    """Views of every image at ``sigma``: {layer: (n_images, n_views, d)}.

    ``layers=None`` reads the extractor's own layer through ``transform_views``
    (any extractor) under the key None; a list reads them all from one backbone
    pass through ``transform_layer_views`` (the extractor's own layer only
    matters to its fit, a one-image probe, so it is set to the first).
    """
    n_images = len(images)
    if layers is None:
        fitted = clone(extractor).set_params(sigma=sigma).fit(images)
        return {None: _check_views(fitted.transform_views(images), n_images)}
    fitted = clone(extractor).set_params(sigma=sigma, layer=layers[0]).fit(images)
    by_layer = fitted.transform_layer_views(images, layers)
    missing = [layer for layer in layers if layer not in by_layer]
    if missing:
        raise ValueError(f"transform_layer_views returned no features for {missing}.")
    return {layer: _check_views(by_layer[layer], n_images, layer) for layer in layers}


def evaluate_sigma(extractor, sigma, images, y, scorer, layers=None):
    """One grid task: extract at ``sigma`` once, then score every layer's views on every split.

    Parameters
    ----------
    extractor : estimator
        The (seeded) extractor; cloned with ``sigma``.
    sigma : float
        The candidate noise level.
    images : array-like
        All images.
    y : ndarray or None
        Labels for the probe.
    scorer : _FoldScorer
        Decomposer, probe and splits.
    layers : list of str or None, default=None
        Candidate layers; None: the extractor's own.

    Returns
    -------
    result : dict
        ``{"extract_time": seconds, "layers": {layer: per-split lists}}``
        (the key None without ``layers``).
    """
    try:
        start = time.perf_counter()
        by_layer = _extract(extractor, sigma, images, layers)
        extract_time = time.perf_counter() - start
        scored = {layer: scorer(by_layer.pop(layer), y) for layer in list(by_layer)}
        return {"extract_time": extract_time, "layers": scored}
    except Exception as exc:
        exc.add_note(f"(while evaluating sigma={sigma:g} in NoiseLevelSelector)")
        raise
