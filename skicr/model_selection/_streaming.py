"""The streaming noise-level scan: :class:`StreamingNoiseLevelSelector`.

Per sigma, the views of each loader batch update one mergeable accumulator per
cross-validation fold (folds by image number, fixed across sigma); a fold's
training statistics are the merge of the other folds', its held-out statistics
its own. Memory holds ``K`` accumulators (``O(K d^2)``) and one batch (plus, with
a probe, the pooled ``n_images x d`` probe features); the results, formatted by
``_results`` and judged by ``_decision``, have the shape of
:class:`NoiseLevelSelector`'s.
"""

import time
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np
from sklearn.base import _fit_context, clone
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from .._utils.distributed import broadcast_seed, resolve_distributed
from .._utils.validation import check_int, check_sigma_grid, check_streaming_estimator
from ._checks import distinct_grid, make_splits
from ._decision import LAYER_CRITERIA, SELECTION_RULES, NoiseLevelGridWarning
from ._evaluate import EXTRA_CRITERIA
from ._results import format_results, select
from ._selector import _SEED_MAX, NoiseLevelSelector

__all__ = ["StreamingNoiseLevelSelector"]


def _folds_of(splits, n_images):
    """Each image's fold from (train, test) splits whose test sets partition the images."""
    folds = np.full(n_images, -1, dtype=np.int64)
    for k, (train, test) in enumerate(splits):
        if np.any(folds[test] >= 0):
            raise ValueError(
                "the streaming scan needs folds whose test sets do not overlap (KFold-like): a "
                "fold's training statistics are the merge of the other folds'."
            )
        folds[test] = k
    if np.any(folds < 0):
        raise ValueError("the streaming scan needs folds whose test sets cover every image.")
    for k, (train, _) in enumerate(splits):
        if train.size != n_images - np.count_nonzero(folds == k) or np.any(folds[train] == k):
            raise ValueError(
                "the streaming scan needs each fold's training images to be all the other folds' "
                "test images (KFold-like splits)."
            )
    return folds


def _merge_others(statistics, k):
    merged = None
    for j, stats in enumerate(statistics):
        if j != k:
            merged = stats.copy() if merged is None else merged.merge(stats)
    return merged


def _label_free(statistics):
    """The label-free criteria of one fold's held-out statistics (those of ``fold_criteria``)."""
    from ..metrics import decompose, lidar_from_statistics, rankme_from_statistics

    return {
        "icr_insample": float(decompose(statistics, spectrum=False).icr),
        "lidar": float(lidar_from_statistics(statistics)),
        "rankme": float(rankme_from_statistics(statistics)),
    }


def score_fold_statistics(statistics, decomposer, probe=None, features=None, labels=None, folds=None):
    """Held-out ICR, the other label-free criteria (and probe accuracy) from per-fold statistics.

    The streaming counterpart of ``_evaluate._score_views``: the same
    per-split lists (``icr``, each of ``EXTRA_CRITERIA``, ``fit_time``,
    ``score_time``; ``probe_accuracy``, ``probe_time`` with a probe). One fold
    means no split: the in-sample ICR of all images.
    """
    # the criteria of a single-layer search (no layer criteria: they need the views)
    criteria = [name for name in EXTRA_CRITERIA if name not in LAYER_CRITERIA]
    result = {"icr": [], "fit_time": [], "score_time": [], **{name: [] for name in criteria}}
    if probe is not None:
        result["probe_accuracy"], result["probe_time"] = [], []
    if len(statistics) == 1:
        start = time.perf_counter()
        fitted = clone(decomposer).fit_statistics(statistics[0])
        result["fit_time"].append(time.perf_counter() - start)
        result["icr"].append(float(fitted.icr_))
        result["score_time"].append(0.0)
        for name, value in _label_free(statistics[0]).items():
            result[name].append(value)
        return result
    for k, test in enumerate(statistics):
        start = time.perf_counter()
        train = _merge_others(statistics, k)
        if k == 0 and train.n_residual_rows < train.n_features:
            warnings.warn(
                f"a fold's training images give {train.n_residual_rows} residual rows for "
                f"{train.n_features} features: the in-memory NoiseLevelSelector would fit the dual "
                "(Gram) form there, the streamed scan fits the primal (d x d) form, so their "
                "values differ (both are valid; use more images or views for agreement).",
                UserWarning, stacklevel=4,
            )
        fitted = clone(decomposer).fit_statistics(train)
        result["fit_time"].append(time.perf_counter() - start)
        start = time.perf_counter()
        result["icr"].append(-float(fitted.score_statistics(test)))
        result["score_time"].append(time.perf_counter() - start)
        for name, value in _label_free(test).items():
            result[name].append(value)
        if probe is not None:
            start = time.perf_counter()
            train_rows, test_rows = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
            fitted_probe = clone(probe).fit(features[train_rows].astype(np.float64), labels[train_rows])
            accuracy = np.mean(fitted_probe.predict(features[test_rows].astype(np.float64))
                               == labels[test_rows])
            result["probe_accuracy"].append(float(accuracy))
            result["probe_time"].append(time.perf_counter() - start)
    return result


class StreamingNoiseLevelSelector(NoiseLevelSelector):
    """Choose the noise level sigma by the held-out ICR, streaming a dataset (any size, many processes).

    The same scan as :class:`NoiseLevelSelector`, for data that does not fit
    in memory: a folder tree, a ``.npy`` / ``.npz`` file, a Hugging Face
    dataset, any torch ``Dataset`` or ``DataLoader``. For each sigma the
    images are streamed once; each batch's views update one mergeable
    :class:`~skicr.metrics.GroupedViewStatistics` per cross-validation fold
    (folds over image numbers, the same at every sigma), then are dropped
    (:func:`~skicr.streaming.fold_statistics_from_loader`). A fold's training
    statistics are the merge of the other folds', its held-out statistics
    its own, so memory is ``O(K d^2)`` plus one batch whatever the number of
    images. ``cv_results_``, ``decision_`` and the warnings have the shape
    and meaning of :class:`NoiseLevelSelector`'s, and the statistics-based
    criteria (held-out and in-sample ICR, LiDAR) equal its values on the
    same images to round-off (RankMe to the round-off of squaring).

    Under ``torch.distributed`` (``torchrun``) each rank reads its shard of
    the dataset (a ``DistributedSampler``, padding duplicates dropped), the
    fold statistics are summed with one all-reduce per sigma and every rank
    gets the same ``cv_results_`` (timings apart). With ``checkpoint``, each
    sigma's fold statistics are saved (every ``checkpoint_every`` batches and
    when finished) and a rerun resumes to the same result.

    Parameters
    ----------
    extractor : FeatureExtractor
        Extracts the views; cloned with each sigma.
    sigmas : array-like of float
        Candidate noise levels (positive, distinct).
    decomposer : InvariantResidualDecomposer or None, default=None
        None means ``InvariantResidualDecomposer(tau=1e-2)``, as in
        :class:`NoiseLevelSelector`. With a streaming covariance estimator (None, ``EmpiricalCovariance``,
        ``ShrunkCovariance``, ``LedoitWolf``, ``OAS``); fitted from
        statistics, always in the primal (``d x d``) form.
    scoring : {"icr", "icr_insample", "lidar", "rankme", "probe"}, default="icr"
        The criterion that chooses sigma. A callable, which needs the views
        themselves, is not available when streaming.
    selection_rule : {"best", "one_se_low", "one_se_high", "knee"}, default="one_se_low"
        As in :class:`NoiseLevelSelector` (the default is the zoo study's
        round-2 winner with the default decomposer's ``tau=1e-2``).
    probe : classifier or None, default=None
        With labels (``y``, the dataset's ``targets`` or labels in the
        batches), fitted on each fold's training images. The probe's
        features (``n_images x d`` float32 after pooling) are kept in memory:
        the one part that grows with the images (50,000 images of
        ``d = 1152`` are 230 MB); they are what the in-memory selector's probe
        sees, so the probe accuracy is the same.
    probe_features : {"first_view", "view_mean"}, default="first_view"
        As in :class:`NoiseLevelSelector`.
    cv : int or iterable of (train, test), default=5
        An int >= 2: ``KFold(cv, shuffle=True)`` over image numbers seeded
        from ``random_state``; 1: no split (in-sample ICR); or (train, test)
        index pairs whose test sets partition the images.
    refit : bool, default=False
        Fit ``best_estimator_`` by streaming the data once more at the best
        sigma (:func:`~skicr.streaming.fit_from_loader`). Off by default: it
        costs one more pass over the data.
    random_state : int, RandomState instance or None, default=None
        Seeds the folds and (when the extractor has none) the views, as in
        :class:`NoiseLevelSelector`: the same ``random_state`` gives the same
        folds and views, so the results equal the in-memory selector's.
    batch_size : int, default=256
        Images per loader batch when the data is not a DataLoader.
    num_workers : int, default=0
        DataLoader worker processes that decode and resize images.
    distributed : {"auto", True, False}, default="auto"
        Shard across ``torch.distributed`` processes; ``"auto"``: when it is
        initialised.
    checkpoint : str, path or None, default=None
        A folder for the per-sigma checkpoints (``sigma-<i>.pt``, one file per
        rank when distributed); rerunning with it resumes.
    checkpoint_every : int, default=50
        Batches between checkpoints within a sigma.
    progress : bool, default=False
        Progress bars over the grid and the batches.

    Attributes
    ----------
    cv_results_ : dict of ndarray
        As :class:`NoiseLevelSelector`'s ``cv_results_`` (no ``layer`` key).
    best_index_ : int
        Index of the chosen sigma in ``cv_results_``.
    best_sigma_ : float
        The chosen noise level.
    best_score_ : float
        Minus the mean held-out ICR of the chosen sigma (or its criterion).
    decision_ : {"interior", "grid_edge", "flat"}
        How much the choice means; see :class:`NoiseLevelSelector`.
    clamped_sigmas_ : dict
        Grid sigmas the backbone cannot tell apart, as in
        :class:`NoiseLevelSelector`.
    n_splits_ : int
        Number of folds (1 without a split).
    n_images_ : int
        Number of images of the dataset.
    best_estimator_ : Pipeline
        Extractor and decomposer at the best sigma, fitted on all images.
        Only when ``refit=True``.

    See Also
    --------
    NoiseLevelSelector : The same scan on images held in memory.
    skicr.datasets.open_image_dataset : The dataset formats read.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr import FeatureExtractor, NoiseLevelSelector
    >>> from skicr.datasets import load_digits_images
    >>> from skicr.model_selection import StreamingNoiseLevelSelector
    >>> from skicr.models import load_pretrained
    >>> images = load_digits_images(return_y=False)[:150]
    >>> extractor = FeatureExtractor(load_pretrained("digits"), layer="mid", n_views=2,
    ...                              batch_size=30)
    >>> streamed = StreamingNoiseLevelSelector(extractor, [0.05, 1.0], cv=3, batch_size=30,
    ...                                        random_state=0).fit(images)
    >>> in_memory = NoiseLevelSelector(extractor, [0.05, 1.0], cv=3,
    ...                                random_state=0).fit(images)
    >>> bool(np.allclose(streamed.cv_results_["mean_icr"],
    ...                  in_memory.cv_results_["mean_icr"], rtol=1e-10))
    True
    """

    _parameter_constraints = {
        "extractor": [HasMethods(["fit", "transform_views", "set_params"])],
        "sigmas": ["array-like"],
        "decomposer": [HasMethods(["fit_statistics", "score_statistics"]), None],
        "scoring": [StrOptions({"icr", "icr_insample", "lidar", "rankme", "probe"}), callable],
        "selection_rule": [StrOptions(set(SELECTION_RULES))],
        "probe": [HasMethods(["fit", "predict"]), None],
        "probe_features": [StrOptions({"first_view", "view_mean"})],
        "cv": [Interval(Integral, 1, None, closed="left"), "cv_object"],
        "refit": ["boolean"],
        "random_state": ["random_state"],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "distributed": [StrOptions({"auto"}), "boolean"],
        "checkpoint": [str, Path, None],
        "checkpoint_every": [Interval(Integral, 1, None, closed="left")],
        "progress": ["boolean"],
    }

    def __init__(
        self,
        extractor,
        sigmas,
        *,
        decomposer=None,
        scoring="icr",
        selection_rule="one_se_low",
        probe=None,
        probe_features="first_view",
        cv=5,
        refit=False,
        random_state=None,
        batch_size=256,
        num_workers=0,
        distributed="auto",
        checkpoint=None,
        checkpoint_every=50,
        progress=False,
    ):
        self.extractor = extractor
        self.sigmas = sigmas
        self.decomposer = decomposer
        self.scoring = scoring
        self.selection_rule = selection_rule
        self.probe = probe
        self.probe_features = probe_features
        self.cv = cv
        self.refit = refit
        self.random_state = random_state
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.distributed = distributed
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.progress = progress

    def _loader(self, data):
        """The DataLoader and its dataset (``data`` opened as a dataset unless it is a loader)."""
        from torch.utils.data import DataLoader

        from ..datasets import image_loader, open_image_dataset

        if isinstance(data, DataLoader):
            from torch.utils.data import RandomSampler

            sampler = data.sampler if data.batch_sampler is None else data.batch_sampler.sampler
            if isinstance(sampler, RandomSampler):
                raise ValueError(
                    "the DataLoader shuffles: its images are numbered by their position in the "
                    "stream, so a shuffle would put other images in each fold at each sigma. Use "
                    "shuffle=False (a DistributedSampler numbers them by dataset index and may "
                    "shuffle)."
                )
            return data, data.dataset
        dataset = open_image_dataset(data)
        return image_loader(dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                            distributed=self.distributed), dataset

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, data, y=None, groups=None):
        """Scan the sigma grid, streaming the data once per sigma, and choose.

        Parameters
        ----------
        data : str, Path, ndarray, torch Dataset or DataLoader
            The images: anything :func:`skicr.datasets.open_image_dataset`
            reads (a folder tree, a flat folder, ``.npy`` / ``.npz``, a
            Hugging Face dataset, an array, a torch ``Dataset``), or a
            ``DataLoader`` used as it is (it must not shuffle, and its dataset
            must have a length).
        y : array-like of shape (n_images,), default=None
            Class labels for the probe; default: the dataset's ``targets``
            (a folder tree's), else the labels in the batches.
        groups : array-like of shape (n_images,), default=None
            Group labels for a group-aware ``cv`` splitter.

        Returns
        -------
        self : StreamingNoiseLevelSelector
            The fitted selector.
        """
        from ..streaming import fit_from_loader, fold_statistics_from_loader

        if callable(self.scoring):
            raise ValueError(
                "a callable scoring needs the views themselves, which the streaming scan never "
                "holds; use NoiseLevelSelector (in memory) or a named criterion."
            )
        decomposer = self._make_decomposer()
        check_streaming_estimator(getattr(decomposer, "covariance_estimator", None),
                                  "StreamingNoiseLevelSelector")
        sigmas = check_sigma_grid(self.sigmas)
        keep, self.clamped_sigmas_ = distinct_grid(sigmas, self.extractor)
        if self.clamped_sigmas_:
            pairs = ", ".join(f"{a:g} -> {b:g}" for a, b in self.clamped_sigmas_.items())
            warnings.warn(
                f"{len(self.clamped_sigmas_)} grid sigma(s) fall on the same timestep of the "
                f"backbone's noise schedule as another grid sigma and are scored once, at the "
                f"kept one ({pairs}); the schedule cannot reach them as distinct noise levels.",
                NoiseLevelGridWarning, stacklevel=3,
            )
            sigmas = sigmas[keep]
        loader, dataset = self._loader(data)
        try:
            n_images = len(dataset)
        except TypeError:
            raise ValueError(
                "the streaming scan needs a dataset with a length (folds are drawn over image "
                "numbers before the first pass); this loader's dataset has none."
            ) from None
        if n_images < 2:
            raise ValueError(f"need at least 2 images to measure an ICR; got {n_images}.")
        if y is None:
            y = getattr(dataset, "targets", None)
        if y is not None:
            y = np.asarray(y).ravel()
            if y.shape[0] != n_images:
                raise ValueError(f"y has {y.shape[0]} labels but there are {n_images} images.")
        probe = self.probe
        collect_labels = probe is not None and y is None
        if self.scoring == "probe" and probe is None:
            raise ValueError('scoring="probe" needs a probe and labels.')

        distributed, rank, _ = resolve_distributed(self.distributed)
        rng = check_random_state(self.random_state)
        split_seed = int(rng.randint(_SEED_MAX))
        feature_seed = None if self.random_state is None else int(rng.randint(_SEED_MAX))
        if distributed and self.random_state is None:
            split_seed = broadcast_seed(split_seed)
        splits = make_splits(self.cv, n_images, y, groups, split_seed)
        if probe is not None and splits is None:
            raise ValueError(
                "the probe accuracy needs held-out images: use cv >= 2 (or no probe) "
                f"instead of cv={self.cv!r}."
            )
        folds = np.zeros(n_images, np.int64) if splits is None else _folds_of(splits, n_images)
        extractor = self._seeded_extractor(feature_seed)
        checkpoint_dir = None if self.checkpoint is None else Path(self.checkpoint)
        if checkpoint_dir is not None:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)

        grid = enumerate(sigmas)
        if self.progress and rank == 0:
            from tqdm.auto import tqdm

            grid = tqdm(grid, total=sigmas.size, desc="sigma grid", unit="sigma")
        results = []
        for i, sigma in grid:
            try:
                fitted = clone(extractor).set_params(sigma=float(sigma))
                measured = fold_statistics_from_loader(
                    fitted, loader, folds,
                    probe_features=self.probe_features if probe is not None else None,
                    collect_labels=collect_labels, distributed=distributed,
                    checkpoint=None if checkpoint_dir is None else checkpoint_dir / f"sigma-{i:03d}.pt",
                    checkpoint_every=self.checkpoint_every, progress=self.progress,
                )
                features, labels, image_folds = measured.features, (
                    measured.labels if collect_labels else y), folds
                if probe is not None and not np.all(measured.seen == 1):
                    rows = np.flatnonzero(measured.seen == 1)
                    if i == 0:
                        warnings.warn(
                            f"{n_images - rows.size} of {n_images} images were not yielded by the "
                            "loader exactly once (drop_last?); the probe uses the others.",
                            UserWarning, stacklevel=3,
                        )
                    features, labels, image_folds = features[rows], labels[rows], folds[rows]
                scored = score_fold_statistics(measured.statistics, decomposer, probe, features,
                                               labels, image_folds)
            except Exception as exc:
                exc.add_note(f"(while evaluating sigma={float(sigma):g} in StreamingNoiseLevelSelector)")
                raise
            results.append({"extract_time": measured.extract_time, "layers": {None: scored}})

        self.n_images_ = n_images
        self.n_splits_ = 1 if splits is None else len(splits)
        self.cv_results_ = format_results(sigmas, None, results, probe is not None)
        self.best_index_, self.best_score_, self.decision_ = select(
            self.cv_results_, self.scoring, self.selection_rule
        )
        self.best_sigma_ = dict(self.cv_results_["params"][self.best_index_])["sigma"]
        if self.refit:
            start = time.perf_counter()
            best = clone(extractor).set_params(sigma=self.best_sigma_)
            fitted_decomposer = fit_from_loader(best, loader, clone(decomposer), distributed=distributed)
            self.best_estimator_ = Pipeline([("extract", best), ("decompose", fitted_decomposer)])
            self.refit_time_ = time.perf_counter() - start
        return self
