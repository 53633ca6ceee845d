"""Choose the noise level of feature extraction without labels.

:class:`NoiseLevelSelector` scans a grid of noise levels sigma. At each sigma
the backbone runs once over all images (through a clone of the feature
extractor); cross-validation folds over images then reuse those features to
measure the held-out Invariant Contamination Ratio (ICR), and, when labels and
a probe are given, the held-out probe accuracy for comparison. The chosen
sigma minimises the mean held-out ICR: no label is needed for the choice.

With ``layers``, the search is joint over (layer, sigma): one backbone pass
per sigma reads every candidate layer at once, and each layer is scored on
its own features.
"""

import time
import warnings
from numbers import Integral

import numpy as np
from joblib import Parallel, delayed
from scipy.stats import rankdata
from sklearn.base import (
    BaseEstimator,
    MetaEstimatorMixin,
    TransformerMixin,
    _fit_context,
    clone,
)
from sklearn.model_selection import KFold, check_cv
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted, column_or_1d

__all__ = ["NoiseLevelSelector"]

_SEED_MAX = np.iinfo(np.int32).max


def _validate_sigmas(sigmas):
    """Return the sigma grid as a 1-D float array, or raise a clear ValueError."""
    try:
        grid = np.asarray(sigmas, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sigmas must be a list of numbers; got {sigmas!r}.") from exc
    if grid.ndim != 1:
        raise ValueError(
            f"sigmas must be a 1-D list of noise levels; got an array of shape {grid.shape}."
        )
    if grid.size == 0:
        raise ValueError("sigmas is empty: give at least one noise level to scan.")
    if not np.all(np.isfinite(grid)):
        raise ValueError(f"sigmas must be finite; got {grid.tolist()}.")
    if np.any(grid <= 0):
        bad = grid[grid <= 0].tolist()
        raise ValueError(f"sigmas must be positive (noise std); got {bad}.")
    if np.unique(grid).size != grid.size:
        raise ValueError(f"sigmas contains repeated values: {grid.tolist()}.")
    return grid


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
    """Views as float64 (n_images, n_views, d), or a ValueError naming the problem."""
    views = np.asarray(views, dtype=np.float64)
    where = "" if layer is None else f" for layer {layer!r}"
    if views.ndim != 3 or views.shape[0] != n_images:
        raise ValueError(
            f"the extractor must return views of shape (n_images={n_images}, n_views, "
            f"n_features){where}; got {views.shape}."
        )
    if not np.all(np.isfinite(views)):
        raise ValueError(f"the extracted features{where} contain NaN or infinite values.")
    return views


def _score_views(views, y, decomposer, probe, probe_features, splits):
    """Held-out ICR (and probe accuracy) of one feature set on every split.

    Returns a dict of per-split lists: ``icr``, ``fit_time``, ``score_time``,
    and ``probe_accuracy``, ``probe_time`` when a probe is given.
    """
    result = {"icr": [], "fit_time": [], "score_time": []}
    if probe is not None:
        result["probe_accuracy"] = []
        result["probe_time"] = []

    if splits is None:
        # cv=1: in-sample ICR on all images, no split
        start = time.perf_counter()
        fitted_decomposer = clone(decomposer).fit(views)
        result["fit_time"].append(time.perf_counter() - start)
        start = time.perf_counter()
        result["icr"].append(_in_sample_icr(fitted_decomposer, views))
        result["score_time"].append(time.perf_counter() - start)
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
        if probe is not None:
            start = time.perf_counter()
            fitted_probe = clone(probe).fit(probe_X[train], y[train])
            accuracy = np.mean(fitted_probe.predict(probe_X[test]) == y[test])
            result["probe_accuracy"].append(float(accuracy))
            result["probe_time"].append(time.perf_counter() - start)
    return result


def _evaluate_sigma(
    extractor, sigma, images, y, decomposer, probe, probe_features, splits, n_images,
    layers=None,
):
    """Extract features once at ``sigma``, then score every split on them.

    Without ``layers``: the extractor's ``transform_views``, and a dict of
    per-split lists (see :func:`_score_views`) plus the scalar
    ``extract_time``. With ``layers``: one ``transform_layer_views`` call
    reads them all from one backbone pass, and the result is
    ``{"extract_time": seconds, "layers": {layer: per-split lists}}``.
    """
    try:
        start = time.perf_counter()
        if layers is None:
            fitted = clone(extractor).set_params(sigma=sigma).fit(images)
            views = _check_views(fitted.transform_views(images), n_images)
        else:
            # the extractor's own layer only matters to its fit (one-image probe)
            fitted = clone(extractor).set_params(sigma=sigma, layer=layers[0]).fit(images)
            by_layer = fitted.transform_layer_views(images, layers)
            missing = [layer for layer in layers if layer not in by_layer]
            if missing:
                raise ValueError(f"transform_layer_views returned no features for {missing}.")
            by_layer = {layer: _check_views(by_layer[layer], n_images, layer) for layer in layers}
        extract_time = time.perf_counter() - start

        if layers is None:
            result = _score_views(views, y, decomposer, probe, probe_features, splits)
            result["extract_time"] = extract_time
            return result
        scored = {}
        for layer in layers:
            scored[layer] = _score_views(
                by_layer.pop(layer), y, decomposer, probe, probe_features, splits
            )
        return {"extract_time": extract_time, "layers": scored}
    except Exception as exc:
        exc.add_note(f"(while evaluating sigma={sigma:g} in NoiseLevelSelector)")
        raise


def _validate_layers(layers, extractor):
    """The candidate layers as a list of distinct names, checked before any extraction."""
    from skicr.extraction._extractor import _check_layer_list, _check_layer_names

    layers = _check_layer_names(layers)
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
    from skicr.extraction import FeatureExtractor

    if isinstance(extractor, FeatureExtractor):
        # cheap (no forward pass): unknown names fail here, with close matches,
        # rather than inside the first grid task
        from skicr.extraction._backbones import as_backbone

        backbone = as_backbone(extractor.backbone)
        _check_layer_list(backbone, layers)
        # the caller holds it during the grid: a model loaded from a path stays
        # cached for the extractor's clones instead of loading twice
        return layers, backbone
    return layers, None


def _rank(values, greater_is_better):
    """Rank 1 = best; NaN ranks last."""
    key = -values if greater_is_better else values.copy()
    key = np.where(np.isnan(key), np.inf, key)
    return rankdata(key, method="min").astype(np.int32)


class NoiseLevelSelector(MetaEstimatorMixin, TransformerMixin, BaseEstimator):
    """Choose the noise level sigma of feature extraction by minimising the ICR.

    A grid search over sigma in the style of
    :class:`~sklearn.model_selection.GridSearchCV`, built so that the backbone
    runs **once per sigma**: for each sigma, a clone of ``extractor`` with
    that sigma extracts the views of all images once
    (``transform_views``); cross-validation folds over images then reuse those
    features. On each fold the decomposer is fitted on the training images
    and scored on the test images: the held-out ICR is minus the decomposer's
    score (the generalized Rayleigh quotients of the test covariances along
    the training Fisher directions). ``best_sigma_`` minimises the mean
    held-out ICR; no label is needed.

    With labels ``y`` and a ``probe`` (e.g.
    :class:`~sklearn.linear_model.LogisticRegression`), the selector also
    reports the cross-validated probe accuracy at each sigma on the same
    folds, for comparison; it drives the choice only with
    ``scoring="probe"``.

    With ``layers``, the search is joint over (layer, sigma): per sigma, one
    backbone pass reads every candidate layer at once
    (``transform_layer_views``: hooks on all of them, stopping after the
    deepest), and the folds are evaluated on each layer's features
    separately, so the layers may differ in width. ``cv_results_`` then has
    one row per (layer, sigma) and ``icr_surface_`` holds the mean held-out
    ICR as a layers x sigmas table; :meth:`plot` draws it as a heat map.

    Parameters
    ----------
    extractor : estimator
        A feature extractor with a ``sigma`` parameter, ``fit(images)`` and
        ``transform_views(images)`` returning an array of shape
        ``(n_images, n_views, n_features)``, typically
        :class:`skicr.FeatureExtractor`. It is cloned for every sigma and
        never modified.
    sigmas : array-like of shape (n_sigmas,)
        Noise levels to scan (positive, distinct). Results keep this order.
    layers : list of str, default=None
        Candidate layers (names as in :func:`skicr.list_layers`; distinct)
        for a joint (layer, sigma) search. Needs an extractor with a
        ``layer`` parameter and ``transform_layer_views(images, layers)``,
        as :class:`skicr.FeatureExtractor` has; unknown names fail before
        the grid runs. None searches sigma only, at the extractor's own
        layer.
    decomposer : estimator, default=None
        Fitted on the training views of each fold and scored on the test
        views; its ``score`` must be minus the held-out ICR. None means
        :class:`skicr.InvariantResidualDecomposer` with its defaults.
    scoring : {"icr", "probe"}, default="icr"
        What chooses ``best_sigma_``: the lowest mean held-out ICR
        (label-free), or the highest mean probe accuracy (needs ``probe``
        and ``y``).
    probe : classifier, default=None
        Cloned and fitted on the training images of each fold (with ``y``),
        then its accuracy is measured on the test images. Ignored when ``y``
        is not given to :meth:`fit`, unless ``scoring="probe"``.
    probe_features : {"first_view", "view_mean"}, default="first_view"
        What the probe sees for each image. ``"first_view"``: the features of
        one augmented, noisy view, i.e. what a downstream user gets from one
        forward pass at that sigma; this is the accuracy the ICR claims to
        predict. ``"view_mean"``: the mean over the views (the estimated
        invariant part), which averages noise away and so favours larger
        sigmas than a single forward pass would.
    cv : int, cross-validation generator, iterable or None, default=5
        Folds over images. An int >= 2 means
        ``KFold(cv, shuffle=True)`` seeded from ``random_state``; 1 or None
        means no split: the in-sample ICR on all images (faster; then no
        probe accuracy can be measured). Any scikit-learn splitter or an
        iterable of (train, test) index arrays is also accepted; the same
        folds are used at every sigma.
    n_jobs : int, default=None
        Number of grid points evaluated in parallel through
        :class:`joblib.Parallel`, so ``joblib.parallel_config(backend=...)``
        can send them to dask or ray. Results do not depend on it.
    refit : bool, default=True
        Fit ``best_estimator_`` (extract + decompose at the best sigma) on all
        images. It runs the backbone once more, at the best sigma.
    random_state : int, RandomState instance or None, default=None
        Seeds the fold shuffle and, when the extractor's own
        ``random_state`` is None, the extractor: every sigma then sees the
        same augmentations and the same standard-normal noise draws (scaled
        by sigma), which makes the curve across sigma smooth.
    progress : bool, default=False
        Show a tqdm progress bar over the grid.

    Attributes
    ----------
    cv_results_ : dict of ndarray
        One entry per sigma, ready for :class:`pandas.DataFrame`. Keys:
        ``sigma``, ``mean_icr``, ``std_icr``, ``rank_icr`` (1 = lowest ICR),
        ``split{k}_icr``; with a probe also ``mean_probe_accuracy``,
        ``std_probe_accuracy``, ``rank_probe_accuracy`` (1 = highest),
        ``split{k}_probe_accuracy`` and ``mean_probe_time``; and the timings
        ``extract_time`` (seconds of backbone per sigma, all images),
        ``mean_fit_time``, ``std_fit_time``, ``mean_score_time``,
        ``std_score_time`` (decomposer, per fold). Probe keys are absent
        (never NaN-filled) when no probe was evaluated. With ``layers``:
        one row per (layer, sigma), the layers in the given order and the
        sigmas in grid order within each layer, the layer name in the
        first key ``layer``; ranks are over all rows, and ``extract_time``
        is the one pass that read every layer at that sigma.
    best_index_ : int
        Index of the chosen row (sigma, or (layer, sigma)) in
        ``cv_results_``.
    best_sigma_ : float
        The chosen noise level.
    best_layer_ : str
        The chosen layer. Only with ``layers``.
    icr_surface_ : pandas.DataFrame of shape (n_layers, n_sigmas)
        Mean held-out ICR (in-sample with ``cv=1``), index ``layer``,
        columns ``sigma``. Only with ``layers``.
    probe_surface_ : pandas.DataFrame of shape (n_layers, n_sigmas)
        Mean probe accuracy, laid out as ``icr_surface_``. Only with
        ``layers`` and when a probe was evaluated.
    best_score_ : float
        Mean score of the chosen sigma, greater is better: minus its mean
        held-out ICR (``scoring="icr"``) or its mean probe accuracy.
    best_estimator_ : Pipeline
        ``Pipeline([("extract", extractor), ("decompose", decomposer)])`` at
        the best sigma (and layer), fitted on all images. Only when
        ``refit=True``.
    n_splits_ : int
        Number of folds (1 without a split).
    refit_time_ : float
        Seconds spent fitting ``best_estimator_``.

    See Also
    --------
    skicr.FeatureExtractor : Views of images at one noise level.
    skicr.InvariantResidualDecomposer : The decomposition and its ICR.

    Examples
    --------
    >>> from skicr import FeatureExtractor, NoiseLevelSelector  # doctest: +SKIP
    >>> selector = NoiseLevelSelector(
    ...     FeatureExtractor(net, layer="mid", n_views=4, random_state=0),
    ...     sigmas=np.geomspace(0.01, 5, 12), cv=5)  # doctest: +SKIP
    >>> selector.fit(images).best_sigma_  # doctest: +SKIP

    A joint search over layers and sigmas, one backbone pass per sigma:

    >>> joint = NoiseLevelSelector(
    ...     FeatureExtractor(net, n_views=4, random_state=0),
    ...     sigmas=np.geomspace(0.01, 2, 8), layers=["down.1", "mid", "up.0"],
    ...     cv=5).fit(images)  # doctest: +SKIP
    >>> joint.best_layer_, joint.best_sigma_, joint.icr_surface_  # doctest: +SKIP
    """

    _parameter_constraints = {
        "extractor": [HasMethods(["fit", "transform_views", "set_params"])],
        "sigmas": ["array-like"],
        "layers": ["array-like", str, None],
        "decomposer": [HasMethods(["fit", "score"]), None],
        "scoring": [StrOptions({"icr", "probe"})],
        "probe": [HasMethods(["fit", "predict"]), None],
        "probe_features": [StrOptions({"first_view", "view_mean"})],
        "cv": [Interval(Integral, 1, None, closed="left"), "cv_object"],
        "n_jobs": [Integral, None],
        "refit": ["boolean"],
        "random_state": ["random_state"],
        "progress": ["boolean"],
    }

    def __init__(
        self,
        extractor,
        sigmas,
        *,
        layers=None,
        decomposer=None,
        scoring="icr",
        probe=None,
        probe_features="first_view",
        cv=5,
        n_jobs=None,
        refit=True,
        random_state=None,
        progress=False,
    ):
        self.extractor = extractor
        self.sigmas = sigmas
        self.layers = layers
        self.decomposer = decomposer
        self.scoring = scoring
        self.probe = probe
        self.probe_features = probe_features
        self.cv = cv
        self.n_jobs = n_jobs
        self.refit = refit
        self.random_state = random_state
        self.progress = progress

    def _make_decomposer(self):
        if self.decomposer is not None:
            return self.decomposer
        from skicr.decomposition import InvariantResidualDecomposer

        return InvariantResidualDecomposer()

    def _seeded_extractor(self, feature_seed):
        """The extractor, seeded by the selector when it carries no seed itself."""
        extractor = self.extractor
        params = extractor.get_params(deep=False)
        if feature_seed is not None and "random_state" in params and params["random_state"] is None:
            extractor = clone(extractor).set_params(random_state=feature_seed)
        return extractor

    def _make_splits(self, n_images, y, groups, split_seed):
        """The (train, test) folds shared by every sigma, or None for no split."""
        if self.cv is None or (isinstance(self.cv, Integral) and self.cv == 1):
            return None
        if isinstance(self.cv, Integral):
            splitter = KFold(n_splits=self.cv, shuffle=True, random_state=split_seed)
        else:
            splitter = check_cv(self.cv)
        placeholder = np.zeros((n_images, 1))
        splits = [
            (np.asarray(train), np.asarray(test))
            for train, test in splitter.split(placeholder, y, groups)
        ]
        if not splits:
            raise ValueError("cv produced no (train, test) split.")
        return splits

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, images, y=None, groups=None):
        """Scan the sigma grid (or the layer x sigma grid) and choose.

        Parameters
        ----------
        images : array-like of shape (n_images, ...)
            Images in the format the extractor accepts (one row per image).
        y : array-like of shape (n_images,), default=None
            Class labels, only for the probe accuracy (never for the choice
            unless ``scoring="probe"``).
        groups : array-like of shape (n_images,), default=None
            Group labels for a group-aware ``cv`` splitter.

        Returns
        -------
        self : NoiseLevelSelector
            The fitted selector.
        """
        sigmas = _validate_sigmas(self.sigmas)
        layers, keep_backbone = (
            (None, None) if self.layers is None else _validate_layers(self.layers, self.extractor)
        )
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
        if self.scoring == "probe" and (self.probe is None or y is None):
            raise ValueError('scoring="probe" needs both a probe and labels y.')
        if self.probe is not None and y is None and self.scoring != "probe":
            warnings.warn(
                "a probe was given but no labels y: the probe accuracy is not measured.",
                UserWarning,
                stacklevel=2,
            )
        probe = self.probe if (self.probe is not None and y is not None) else None

        rng = check_random_state(self.random_state)
        split_seed = rng.randint(_SEED_MAX)
        feature_seed = None if self.random_state is None else int(rng.randint(_SEED_MAX))

        splits = self._make_splits(n_images, y, groups, split_seed)
        if probe is not None and splits is None:
            raise ValueError(
                "the probe accuracy needs held-out images: use cv >= 2 (or no probe) "
                f"instead of cv={self.cv!r}."
            )

        extractor = self._seeded_extractor(feature_seed)
        decomposer = self._make_decomposer()

        tasks = (
            delayed(_evaluate_sigma)(
                extractor,
                float(sigma),
                images,
                y,
                decomposer,
                probe,
                self.probe_features,
                splits,
                n_images,
                layers,
            )
            for sigma in sigmas
        )
        # one task per sigma (one backbone pass, all layers), through joblib so
        # that parallel_config(backend=...) distributes the grid
        outputs = Parallel(n_jobs=self.n_jobs, return_as="generator")(tasks)
        if self.progress:
            from tqdm.auto import tqdm

            outputs = tqdm(outputs, total=sigmas.size, desc="sigma grid", unit="sigma")
        results = list(outputs)
        del keep_backbone

        self.n_splits_ = 1 if splits is None else len(splits)
        if layers is None:
            self.cv_results_ = self._format_results(sigmas, results, probe is not None)
        else:
            # one row per (layer, sigma), layer-major: each layer's rows are
            # what a single-layer search at that layer reports
            rows = [
                dict(r["layers"][layer], extract_time=r["extract_time"])
                for layer in layers
                for r in results
            ]
            row_sigmas = np.tile(sigmas, len(layers))
            formatted = self._format_results(row_sigmas, rows, probe is not None)
            row_layers = np.empty(row_sigmas.size, dtype=object)
            row_layers[:] = np.repeat(np.asarray(layers, dtype=object), sigmas.size)
            self.cv_results_ = {"layer": row_layers, **formatted}

        if self.scoring == "icr":
            mean = self.cv_results_["mean_icr"]
            if np.all(np.isnan(mean)):
                raise ValueError("the ICR is NaN at every sigma; cannot choose a noise level.")
            self.best_index_ = int(np.nanargmin(mean))
            self.best_score_ = -float(mean[self.best_index_])
        else:
            mean = self.cv_results_["mean_probe_accuracy"]
            self.best_index_ = int(np.nanargmax(mean))
            self.best_score_ = float(mean[self.best_index_])
        self.best_sigma_ = float(self.cv_results_["sigma"][self.best_index_])
        best_params = {"sigma": self.best_sigma_}
        if layers is not None:
            self.best_layer_ = str(self.cv_results_["layer"][self.best_index_])
            best_params["layer"] = self.best_layer_
            self.icr_surface_ = self._surface("mean_icr", layers, sigmas)
            if probe is not None:
                self.probe_surface_ = self._surface("mean_probe_accuracy", layers, sigmas)

        if self.refit:
            start = time.perf_counter()
            self.best_estimator_ = Pipeline(
                [
                    ("extract", clone(extractor).set_params(**best_params)),
                    ("decompose", clone(decomposer)),
                ]
            ).fit(images)
            self.refit_time_ = time.perf_counter() - start
        return self

    def _surface(self, key, layers, sigmas):
        """``cv_results_[key]`` as a layers x sigmas DataFrame."""
        import pandas as pd

        values = np.asarray(self.cv_results_[key], dtype=np.float64)
        return pd.DataFrame(
            values.reshape(len(layers), sigmas.size),
            index=pd.Index(list(layers), name="layer"),
            columns=pd.Index(sigmas.copy(), name="sigma"),
        )

    @staticmethod
    def _format_results(sigmas, results, with_probe):
        """Per-split lists from the grid -> a dict of arrays (GridSearchCV style)."""
        icr = np.asarray([r["icr"] for r in results], dtype=np.float64)
        cv_results = {
            "sigma": np.array(sigmas, dtype=np.float64),
            "mean_icr": icr.mean(axis=1),
            "std_icr": icr.std(axis=1),
        }
        cv_results["rank_icr"] = _rank(cv_results["mean_icr"], greater_is_better=False)
        if with_probe:
            accuracy = np.asarray([r["probe_accuracy"] for r in results], dtype=np.float64)
            cv_results["mean_probe_accuracy"] = accuracy.mean(axis=1)
            cv_results["std_probe_accuracy"] = accuracy.std(axis=1)
            cv_results["rank_probe_accuracy"] = _rank(
                cv_results["mean_probe_accuracy"], greater_is_better=True
            )
        for k in range(icr.shape[1]):
            cv_results[f"split{k}_icr"] = icr[:, k]
        if with_probe:
            for k in range(accuracy.shape[1]):
                cv_results[f"split{k}_probe_accuracy"] = accuracy[:, k]
        cv_results["extract_time"] = np.asarray([r["extract_time"] for r in results])
        for name in ("fit_time", "score_time"):
            times = np.asarray([r[name] for r in results], dtype=np.float64)
            cv_results[f"mean_{name}"] = times.mean(axis=1)
            cv_results[f"std_{name}"] = times.std(axis=1)
        if with_probe:
            times = np.asarray([r["probe_time"] for r in results], dtype=np.float64)
            cv_results["mean_probe_time"] = times.mean(axis=1)
        return cv_results

    def transform(self, images):
        """Invariant features at the best sigma (``best_estimator_.transform``).

        Parameters
        ----------
        images : array-like of shape (n_images, ...)
            Images in the format the extractor accepts.

        Returns
        -------
        features : ndarray of shape (n_images, n_components)
            The decomposer's output at ``best_sigma_``.
        """
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.transform(images)

    def plot(self, ax=None):
        """Plot the ICR (and the probe accuracy, when known) against sigma.

        After a joint search over ``layers``, draws the ICR surface instead:
        a heat map over layers x sigma with the chosen cell (and the probe
        optimum, when known) marked (:func:`skicr.plotting.plot_icr_surface`).
        Needs matplotlib.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.

        Returns
        -------
        ax : matplotlib Axes
            The axes holding the ICR curve (the accuracy, if any, is on
            ``ax.twinx()``), or the heat map.
        """
        check_is_fitted(self, "cv_results_")
        if "layer" in self.cv_results_:
            from skicr.plotting import plot_icr_surface

            return plot_icr_surface(self.cv_results_, best_index=self.best_index_, ax=ax)
        from skicr.plotting import plot_noise_scan

        return plot_noise_scan(self.cv_results_, best_index=self.best_index_, ax=ax)
