"""The estimator: :class:`NoiseLevelSelector` (see the package docstring for its steps)."""

import time
import warnings
from numbers import Integral

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import (
    BaseEstimator,
    MetaEstimatorMixin,
    TransformerMixin,
    _fit_context,
    clone,
)
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._utils.validation import check_sigma_grid
from ._checks import (
    _labelled_mask,
    check_images_and_labels,
    check_layers,
    distinct_grid,
    few_label_splits,
    make_splits,
    shared_backbone,
)
from ._decision import (
    COMMON_WIDTH,
    LABEL_FREE_CRITERIA,
    LAYER_CRITERIA,
    LAYER_PROCEDURES,
    SELECTION_RULES,
    LayerChoiceWarning,
    NoiseLevelGridWarning,
    layer_choice_report,
    resolve_layer_scoring,
)
from ._evaluate import _FoldScorer, evaluate_sigma
from ._results import format_results, select, surface

__all__ = ["NoiseLevelSelector"]

_SEED_MAX = np.iinfo(np.int32).max
#: the named scorings: every label-free criterion, and the probe
_SCORINGS = set(LABEL_FREE_CRITERIA) | {"probe"}


#: the ridge of the default decomposer (``decomposer=None``): the zoo study's round-2 winner,
#: held-out ICR at tau 1e-2 with the one-standard-error rule (docs/noise_level_study.md)
DEFAULT_DECOMPOSER_TAU = 1e-2


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
    the training Fisher directions). ``best_sigma_`` is picked on the curve
    of the mean held-out ICR over sigma by ``selection_rule`` (by default
    the smallest sigma within one paired standard error of its minimum); no
    label is needed.

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
    ICR as a layers x sigmas table; :meth:`plot` draws it as a heat map. By
    default (``layer_scoring="auto"``) the choice is the procedure of the
    pre-registered layer study (``docs/layer_study.md``): each layer gets its
    own sigma by the held-out ICR and ``selection_rule``, then the layers are
    compared at those sigmas by ``"icr_top"``
    (:data:`~skicr.model_selection.LAYER_SEARCH_DEFAULTS`). The study found
    that label-free layer choice unreliable (within 2 points of the probe's
    best cell on 2 of 4 held-out denoisers), so it always comes with a
    :class:`~skicr.model_selection.LayerChoiceWarning`.

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
        ``InvariantResidualDecomposer(tau=1e-2)``
        (:class:`skicr.InvariantResidualDecomposer` with the ridge of the
        pre-registered zoo study's round 2, ``docs/noise_level_study.md``;
        the decomposer's own default is 1e-3).
    scoring : str or callable, default="icr"
        What chooses ``best_sigma_``. Label-free: ``"icr"``, the held-out
        ICR (lower is better; the decomposer fitted on each fold's training
        images, scored on its test images); ``"icr_insample"``, the ICR of
        each fold's test images alone; ``"lidar"`` and ``"rankme"`` of each
        fold's test views (higher is better); the criteria meant for
        comparing layers of different width (measured in every joint search,
        see ``docs/layer_study.md``): ``"icr_top"`` (held-out ICR of the top
        ``common_width`` training Fisher directions), ``"icr_pca"`` (held-out
        ICR after a PCA of the fold's training views to ``common_width``
        dimensions), ``"invariant_rank"`` (effective rank of Sigma_s of the
        test views, higher is better) and ``"invariant_dims"``
        (:func:`skicr.metrics.invariant_dimensions` of the held-out,
        bias-corrected spectrum, higher is better); or a callable
        ``scoring(train_views, test_views) -> float``, greater is better,
        called on every fold. ``"probe"``: the highest mean probe accuracy
        (needs ``probe`` and ``y``). Every built-in label-free criterion is
        measured on the same folds whatever ``scoring`` is, and reported in
        ``cv_results_``. The default follows the pre-registered zoo study
        (``docs/noise_level_study.md``).
    layer_scoring : str or None, default="auto"
        With ``layers``: how the layers are compared (ignored without them;
        ``layer_scoring_`` holds what it resolved to). A criterion name (any
        of ``scoring``'s, ``"probe"`` included): each layer first gets its
        own sigma by ``scoring`` and ``selection_rule`` (label-free when
        ``scoring`` is), then the layers are compared at those sigmas by this
        criterion. ``"auto"``: ``"icr_top"``, i.e. the procedure chosen on
        the development half of the pre-registered layer study
        (``docs/layer_study.md``; with the defaults ``scoring="icr"`` and
        ``selection_rule="one_se_low"``: 4 of 5 development and 2 of 4
        held-out denoisers within 2 points of the grid's best probe
        accuracy, held-out mean gap 3.2 points, worst 7.0), or ``"joint"``
        when ``scoring="probe"`` (the probe's accuracy is on one scale across
        layers). ``"joint"``: the cell with the best ``scoring`` over all
        (layer, sigma) cells, the default before the study (held-out: 1 of
        4 within 2 points, mean gap 13.6, worst 39.2 points, as each layer's
        ICR is on its own scale); None means the same as ``"joint"``.
        ``layer_scoring="probe"`` with ``n_labels_per_class`` is the
        few-labels mode: sigma without labels, the layer from a few labels
        (``docs/layer_study.md`` measures how many it takes).
    selection_rule : {"best", "one_se_low", "one_se_high", "knee"}, default="one_se_low"
        How the scoring curve over sigma picks a point. ``"best"``: its
        optimum. ``"one_se_low"`` / ``"one_se_high"``: the smallest /
        largest sigma whose score is within one paired standard error over
        folds of the optimum's (the default, with the decomposer's
        ``tau=1e-2``, is the zoo study's round-2 winner; ``"best"`` with
        ``InvariantResidualDecomposer()`` is the previous default).
        ``"knee"``: the last point before the curve rises away from its
        optimum (furthest from the chord between the
        optimum and the grid's end). With ``layers``, the rule runs within
        the layer of the optimum (within every layer with ``layer_scoring``).
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
    n_labels_per_class : int or None, default=None
        Few-labels mode: the probe sees only this many labelled images per
        class (a seeded draw, :func:`skicr.model_selection.few_label_splits`;
        ``y = -1`` marks an unlabelled image, scikit-learn's semi-supervised
        convention). Its accuracy, in ``cv_results_`` and for the choice, is
        then estimated on the drawn images alone
        (:func:`skicr.model_selection.few_label_accuracy`): trained on views
        1..V-1 of the training images of ``min(n_labels_per_class, 5)``
        stratified folds of the drawn images, tested on view 0 of the held-out
        ones (with 1 image per class: trained on views 1..V-1 and tested on
        view 0 of the same images, an optimistic estimate). None: every
        labelled image, on the ``cv`` folds.
    common_width : int, default=16
        The fixed number of directions of ``"icr_top"`` and the common width
        of ``"icr_pca"`` (a layer narrower than it keeps all of its own).
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
        ``split{k}_icr``; the same four for each other label-free criterion
        (``icr_insample``, ``lidar``, ``rankme``; rank 1 = best) and, with a
        callable ``scoring``, for ``score``; ``decision`` (the verdict
        ``decision_``, on every row); with a probe also ``mean_probe_accuracy``,
        ``std_probe_accuracy``, ``rank_probe_accuracy`` (1 = highest),
        ``split{k}_probe_accuracy`` and ``mean_probe_time``; and the timings
        ``extract_time`` (seconds of backbone per sigma, all images),
        ``mean_fit_time``, ``std_fit_time``, ``mean_score_time``,
        ``std_score_time`` (decomposer, per fold). Probe keys are absent
        (never NaN-filled) when no probe was evaluated. With ``layers``:
        one row per (layer, sigma), the layers in the given order and the
        sigmas in grid order within each layer, the layer name in the
        first key ``layer``; ranks are over all rows, and ``extract_time``
        is the one pass that read every layer at that sigma. As in
        :class:`~sklearn.model_selection.GridSearchCV`, ``params`` holds each
        row's parameters as a dict (``{"sigma": ...}``, with ``"layer"`` in
        a joint search; an object array) and ``param_sigma`` (and
        ``param_layer``) one column per parameter.
    best_index_ : int
        Index of the chosen row (sigma, or (layer, sigma)) in
        ``cv_results_``.
    decision_ : {"interior", "grid_edge", "flat"}
        How much the choice means. ``"grid_edge"``: the scoring criterion's
        optimum is the first or last distinct sigma of the grid (the curve
        may keep improving beyond it); ``"flat"``: the optimum's advantage
        over a neighbouring sigma is below the paired standard error over
        folds of that difference; ``"interior"``: a minimum that stands out.
        Anything but ``"interior"`` comes with a
        :class:`~skicr.NoiseLevelDecisionWarning`: such a sigma is not a
        measured "semantic window". Also in ``cv_results_["decision"]``.
        With ``layers``, judged on the chosen layer's curve.
    clamped_sigmas_ : dict
        Grid sigmas the backbone cannot run as distinct points (a VP/DDPM
        schedule maps them to the same timestep as another grid sigma),
        ``{dropped sigma: kept sigma}``; they are left out of
        ``cv_results_`` and announced once with a
        :class:`~skicr.NoiseLevelGridWarning`. Empty when every sigma is
        distinct.
    best_sigma_ : float
        The chosen noise level.
    best_layer_ : str
        The chosen layer. Only with ``layers``.
    label_free_choice_ : dict
        Which part of the choice used no label: ``{"sigma": bool}``, and
        ``"layer"`` with ``layers``. A label-free layer choice among several
        layers comes with a :class:`~skicr.model_selection.LayerChoiceWarning`
        stating what the layer study measured for it.
    layer_scoring_ : str or None
        What ``layer_scoring`` resolved to: ``"joint"`` or the criterion
        that compared the layers; None without ``layers``.
    layer_choice_ : dict
        Only with ``layers``: what part of the choice used labels and how
        reliable the layer study found it
        (:func:`~skicr.model_selection.layer_choice_report`: ``label_free``,
        ``sigma_label_free``, ``by``, ``procedure``, ``study_procedure``,
        ``n_labels_per_class``, ``settled``, ``study``, ``message``; the
        message is the warning's). ``skicr scan --layers`` writes this dict
        to ``scan.json`` as ``layer_choice``.
    icr_surface_ : pandas.DataFrame of shape (n_layers, n_sigmas)
        Mean held-out ICR (in-sample with ``cv=1``), index ``layer``,
        columns ``sigma``. Only with ``layers``.
    probe_surface_ : pandas.DataFrame of shape (n_layers, n_sigmas)
        Mean probe accuracy, laid out as ``icr_surface_``. Only with
        ``layers`` and when a probe was evaluated.
    best_score_ : float
        Mean ``scoring`` of the chosen row, greater is better: minus its mean
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
    >>> from skicr import FeatureExtractor, NoiseLevelSelector
    >>> from skicr.datasets import load_digits_images
    >>> from skicr.models import load_pretrained
    >>> images = load_digits_images(return_y=False)[:60]
    >>> net = load_pretrained("digits")
    >>> selector = NoiseLevelSelector(
    ...     FeatureExtractor(net, layer="mid", n_views=2),
    ...     sigmas=[0.05, 0.2, 1.0], cv=3, random_state=0,
    ... ).fit(images)
    >>> float(selector.best_sigma_)           # the lowest held-out ICR
    0.05
    >>> len(selector.cv_results_["mean_icr"])
    3

    A joint search over layers and sigmas, one backbone pass per sigma (the
    layer study's procedure; it warns that the layer is a label-free guess):

    >>> import warnings
    >>> from skicr.model_selection import LayerChoiceWarning
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", LayerChoiceWarning)
    ...     joint = NoiseLevelSelector(
    ...         FeatureExtractor(net, n_views=2), sigmas=[0.05, 0.5],
    ...         layers=["down.1", "mid"], cv=3, random_state=0,
    ...     ).fit(images)
    >>> joint.icr_surface_.shape
    (2, 2)
    >>> joint.layer_scoring_, joint.layer_choice_["label_free"]
    ('icr_top', True)
    """

    _parameter_constraints = {
        "extractor": [HasMethods(["fit", "transform_views", "set_params"])],
        "sigmas": ["array-like"],
        "layers": ["array-like", str, None],
        "decomposer": [HasMethods(["fit", "score"]), None],
        "scoring": [StrOptions(_SCORINGS), callable],
        "layer_scoring": [StrOptions(_SCORINGS | set(LAYER_PROCEDURES)), None],
        "selection_rule": [StrOptions(set(SELECTION_RULES))],
        "probe": [HasMethods(["fit", "predict"]), None],
        "probe_features": [StrOptions({"first_view", "view_mean"})],
        "n_labels_per_class": [Interval(Integral, 1, None, closed="left"), None],
        "common_width": [Interval(Integral, 1, None, closed="left")],
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
        layer_scoring="auto",
        selection_rule="one_se_low",
        probe=None,
        probe_features="first_view",
        n_labels_per_class=None,
        common_width=COMMON_WIDTH,
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
        self.layer_scoring = layer_scoring
        self.selection_rule = selection_rule
        self.probe = probe
        self.probe_features = probe_features
        self.n_labels_per_class = n_labels_per_class
        self.common_width = common_width
        self.cv = cv
        self.n_jobs = n_jobs
        self.refit = refit
        self.random_state = random_state
        self.progress = progress

    def _make_decomposer(self):
        if self.decomposer is not None:
            return self.decomposer
        from skicr.decomposition import InvariantResidualDecomposer

        return InvariantResidualDecomposer(tau=DEFAULT_DECOMPOSER_TAU)

    def _seeded_extractor(self, feature_seed):
        """The extractor, seeded by the selector when it carries no seed itself."""
        extractor = self.extractor
        params = extractor.get_params(deep=False)
        if feature_seed is not None and "random_state" in params and params["random_state"] is None:
            extractor = clone(extractor).set_params(random_state=feature_seed)
        return extractor

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, images, y=None, groups=None):
        """Scan the sigma grid (or the layer x sigma grid) and choose.

        Parameters
        ----------
        images : array-like of shape (n_images, ...)
            Images in the format the extractor accepts (one row per image).
        y : array-like of shape (n_images,), default=None
            Class labels, only for the probe accuracy (never for the choice
            unless ``scoring="probe"`` or ``layer_scoring="probe"``; -1 marks an
            unlabelled image with ``n_labels_per_class``).
        groups : array-like of shape (n_images,), default=None
            Group labels for a group-aware ``cv`` splitter.

        Returns
        -------
        self : NoiseLevelSelector
            The fitted selector.
        """
        # check -> candidates -> evaluate (one task per sigma) -> format -> select -> refit
        sigmas = check_sigma_grid(self.sigmas)
        layers = check_layers(self.layers, self.extractor)
        keep, self.clamped_sigmas_ = distinct_grid(sigmas, self.extractor)
        if self.clamped_sigmas_:
            pairs = ", ".join(f"{a:g} -> {b:g}" for a, b in self.clamped_sigmas_.items())
            warnings.warn(
                f"{len(self.clamped_sigmas_)} grid sigma(s) fall on the same timestep of the "
                f"backbone's noise schedule as another grid sigma and are scored once, at the "
                f"kept one ({pairs}); the schedule cannot reach them as distinct noise levels.",
                NoiseLevelGridWarning,
                stacklevel=3,
            )
            sigmas = sigmas[keep]
        if self.layer_scoring not in ("auto", None) and layers is None:
            raise ValueError("layer_scoring compares layers: give layers=[...] as well.")
        self.layer_scoring_ = resolve_layer_scoring(self.layer_scoring, self.scoring,
                                                    layers is not None)
        uses_probe = "probe" if "probe" in (self.scoring, self.layer_scoring) else self.scoring
        n_images, y, probe = check_images_and_labels(images, y, uses_probe, self.probe)
        rng = check_random_state(self.random_state)
        split_seed = rng.randint(_SEED_MAX)
        feature_seed = None if self.random_state is None else int(rng.randint(_SEED_MAX))
        probe_splits = None
        if self.n_labels_per_class is not None:
            if probe is None:
                raise ValueError("n_labels_per_class needs a probe and labels y.")
            if self.n_labels_per_class == 1 and self.probe_features == "view_mean":
                raise ValueError(
                    'n_labels_per_class=1 with probe_features="view_mean" would test the probe '
                    "on its own training rows; use probe_features=\"first_view\" or more labels."
                )
            # a seed of its own, so that the folds and the features do not move with it
            probe_splits = few_label_splits(y, self.n_labels_per_class,
                                            random_state=None if self.random_state is None
                                            else int(rng.randint(_SEED_MAX)))
        elif y is not None and not np.all(_labelled_mask(y)):
            raise ValueError(
                "y marks some images as unlabelled (-1): give n_labels_per_class to use only "
                "the labelled ones for the probe."
            )
        # the probe's folds hold labels; the ICR's folds ignore them (-1 is not a class there)
        fold_y = None if probe_splits is not None else y
        splits = make_splits(self.cv, n_images, fold_y, groups, split_seed)
        if probe is not None and splits is None and probe_splits is None:
            raise ValueError(
                "the probe accuracy needs held-out images: use cv >= 2 (or no probe) "
                f"instead of cv={self.cv!r}."
            )
        extractor = self._seeded_extractor(feature_seed)
        decomposer = self._make_decomposer()
        scoring_callable = self.scoring if callable(self.scoring) else None
        layer_criteria = layers is not None or bool(
            {self.scoring, self.layer_scoring} & set(LAYER_CRITERIA))
        scorer = _FoldScorer(decomposer, probe, self.probe_features, splits, scoring_callable,
                             layer_criteria=layer_criteria, common_width=self.common_width,
                             probe_splits=probe_splits)

        with shared_backbone(self.extractor, layers):
            results = self._run_grid(extractor, sigmas, images, y, scorer, layers)

        self.n_splits_ = 1 if splits is None else len(splits)
        self.cv_results_ = format_results(sigmas, layers, results, probe is not None,
                                          with_score=scoring_callable is not None)
        self.best_index_, self.best_score_, self.decision_ = select(
            self.cv_results_, self.scoring, self.selection_rule, self.layer_scoring_
        )
        best_params = dict(self.cv_results_["params"][self.best_index_])
        self.best_sigma_ = best_params["sigma"]
        self.label_free_choice_ = {"sigma": self.scoring != "probe"}
        if layers is not None:
            self.best_layer_ = best_params["layer"]
            layer_by = self.scoring if self.layer_scoring_ == "joint" else self.layer_scoring_
            self.label_free_choice_["layer"] = layer_by != "probe"
            self.layer_choice_ = layer_choice_report(
                self.best_layer_, scoring=self.scoring, selection_rule=self.selection_rule,
                layer_scoring=self.layer_scoring_, label_free_choice=self.label_free_choice_,
                n_labels_per_class=self.n_labels_per_class, n_layers=len(layers))
            if self.label_free_choice_["layer"] and len(layers) > 1:
                warnings.warn(self.layer_choice_["message"], LayerChoiceWarning, stacklevel=3)
            self.icr_surface_ = surface(self.cv_results_, "mean_icr", layers, sigmas)
            if probe is not None:
                self.probe_surface_ = surface(self.cv_results_, "mean_probe_accuracy", layers, sigmas)
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

    def _run_grid(self, extractor, sigmas, images, y, scorer, layers):
        """One task per sigma (one backbone pass, all layers), through joblib so that
        ``parallel_config(backend=...)`` distributes the grid."""
        tasks = (
            delayed(evaluate_sigma)(extractor, float(sigma), images, y, scorer, layers)
            for sigma in sigmas
        )
        outputs = Parallel(n_jobs=self.n_jobs, return_as="generator")(tasks)
        if self.progress:
            from tqdm.auto import tqdm

            outputs = tqdm(outputs, total=sigmas.size, desc="sigma grid", unit="sigma")
        return list(outputs)

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
