"""InvariantResidualDecomposer: an sklearn estimator over the functional core."""

import warnings
from numbers import Integral, Real

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .metrics import (
    FeatureScaleWarning,
    GroupedViewStatistics,
    accumulate,
    check_covariance_estimator,
    decompose,
    dual_decompose,
    dual_heldout_icr,
    heldout_icr,
    heldout_icr_from_statistics,
    is_streaming_estimator,
    needs_fourth_moments,
)
from ._utils.validation import check_streaming_estimator
from .views import reorder_view_columns, resolve_n_views, split_views, view_values
from ._utils.threads import blas_threads

__all__ = ["InvariantResidualDecomposer"]


def _check_dual_representable(result):
    """Warn where the dual fit's attributes in the features' units over- or underflow.

    The dual form has no ``d x d`` covariance attributes, so unlike the primal
    path nothing has to be refused: only the traces and the ridge leave
    float64's range; ICR, the spectrum, the invariant share and the
    directions are computed at a normalised scale.
    """
    values = np.array([result.trace_s, result.trace_xi, result.tau])
    overflow = not np.all(np.isfinite(values))
    underflow = bool(np.any((values > 0) & (values < np.finfo(np.float64).tiny / np.finfo(np.float64).eps)))
    scaled = np.array(result.scaled_traces)
    underflow = underflow or bool(np.any((values[:2] == 0) & (scaled > 0)))
    if overflow or underflow:
        warnings.warn(
            f"The features' magnitude (about {result.normalisation.scale:.3g}) puts trace_s_, "
            f"trace_xi_, expansion_ and tau_ {'beyond' if overflow else 'near'} float64's "
            f"{'range (they are inf)' if overflow else 'underflow (they lose precision)'}; "
            "icr_, eigenvalues_, invariant_share_, components_ and transform are exact. "
            "ICR is scale-invariant: multiply X by a constant first.",
            FeatureScaleWarning,
            stacklevel=4,
        )


def _check_representable(result):
    """Refuse covariances float64 cannot hold; warn where they lose precision.

    The spectrum, ICR and directions are computed at a normalised scale and
    are exact at any magnitude; only the covariance attributes, in the
    features' own units, scale with its square.
    """
    largest = max(float(np.max(np.abs(result.covariance_s))), float(np.max(np.abs(result.covariance_xi))))
    advice = (
        "ICR is scale-invariant: multiply X by a constant first (skicr.metrics.icr_score "
        "handles any magnitude)."
    )
    if not np.isfinite(largest) or not np.all(np.isfinite(result.directions)):
        raise ValueError(
            f"The features' magnitude (about {result.scale:.3g}) puts their covariances beyond "
            f"float64's range (covariance_s_ and covariance_xi_ would overflow). {advice}"
        )
    if 0 < largest < np.finfo(np.float64).tiny / np.finfo(np.float64).eps:
        warnings.warn(
            f"The features' magnitude (about {result.scale:.3g}) puts their covariances near "
            "float64's underflow: covariance_s_, covariance_xi_ and tau_ lose precision "
            f"(icr_, eigenvalues_, components_ and transform do not). {advice}",
            FeatureScaleWarning,
            stacklevel=4,
        )


class InvariantResidualDecomposer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Split grouped views into invariant and residual parts and measure ICR.

    Each row of ``X`` is one image with ``n_views`` views (augmentations plus
    fresh noise). The invariant part of image ``i`` is the mean of its views
    ``m_i``; the residual is ``xi_iv = h_iv - m_i``. From their covariances
    the generalized eigenproblem ``Sigma_s v = lambda (Sigma_xi + tau I) v``
    gives Fisher directions and invariant SNRs, summarised by the Invariant
    Contamination Ratio ``ICR = 1 / (1 + mean(lambda))`` (lower is cleaner).

    Parameters
    ----------
    n_views : int or None, default=None
        Views per image for flattened 2-D input. None takes it from the data:
        a 3-D array ``(n_images, n_views, n_features)``, the output of
        :class:`~skicr.FeatureExtractor` (which carries it), or pandas columns
        named ``view{v}_...``.
    covariance_estimator : sklearn covariance estimator or None, default=None
        None: unbiased empirical covariances. Otherwise an estimator such as
        ``LedoitWolf()``, ``OAS()``, ``ShrunkCovariance()``, ``MinCovDet()`` or
        ``GraphicalLasso()``, fitted at the right degrees of freedom: on the
        ``N (V - 1)`` orthonormal within-image contrasts for Sigma_xi and on
        the ``N`` centred image means for Sigma_s (then scaled to ``N - 1``).
        ``EmpiricalCovariance``, ``ShrunkCovariance``, ``LedoitWolf`` and
        ``OAS`` are computed exactly from streaming statistics (and so work
        with :meth:`partial_fit`).
    tau : float, default=1e-3
        Ridge on Sigma_xi. 0.0 means no regularisation.
    tau_mode : {"relative", "absolute"}, default="relative"
        "relative": the ridge is ``tau * tr(Sigma_xi) / d``, a fraction of the
        mean residual variance (scale-free). "absolute": ``tau`` itself.
    n_components : int or None, default=None
        Number of Fisher directions kept by :meth:`transform`; None keeps all
        ``d``. ICR always uses the whole spectrum.
    bias_correction : bool, default=False
        False: the seed paper's plug-in ``Sigma_s = cov(m)``, which in samples
        estimates ``Sigma_s + Sigma_xi / V`` (so ICR depends on ``V``).
        True: ``Sigma_s = cov(m) - Sigma_xi / V`` projected to PSD, whose ICR
        estimates the population value whatever ``V``. The plug-in is the
        default to match the published metric.

    Attributes
    ----------
    n_views_ : int
        Views per image.
    n_features_in_ : int
        Number of input columns (``n_views * d`` for flattened input).
    feature_names_in_ : ndarray of str
        Input column names, when ``X`` was a DataFrame.
    n_features_view_ : int
        Features per view ``d``.
    n_images_seen_ : int
        Images used in the fit.
    mean_ : ndarray of shape (d,)
        Mean of the image means.
    covariance_s_ : ndarray of shape (d, d) or None
        Invariant covariance Sigma_s; None in the dual form.
    covariance_xi_ : ndarray of shape (d, d) or None
        Residual covariance Sigma_xi; None in the dual form.
    solver_ : {"primal", "dual"}
        "dual" when the features are wider than the residual rows
        (``d > N (V - 1)``), the covariance estimator streams (None,
        ``EmpiricalCovariance``, ``ShrunkCovariance``, ``LedoitWolf``, ``OAS``)
        and ``bias_correction=False``: the problem is solved exactly in the
        span of the training rows plus its isotropic complement, through
        ``(N V) x (N V)`` Gram matrices, and no ``d x d`` matrix is formed
        (see :ref:`the user guide <dual-form>`). "primal" otherwise.
    tau_ : float
        Absolute ridge used.
    eigenvalues_ : ndarray of shape (d,)
        All generalized eigenvalues (invariant SNRs), descending.
    components_ : ndarray of shape (n_components, d)
        Fisher directions, one per row, ``v^T (Sigma_xi + tau I) v = 1``. In
        the dual form only the directions in the span of the training rows
        (at most ``N V - 1``) are available.
    n_components_ : int
        Number of directions kept.
    icr_ : float
        In-sample Invariant Contamination Ratio.
    mean_snr_ : float
        Mean invariant SNR ``mean(eigenvalues_)``.
    trace_s_ : float
        ``tr(Sigma_s)``.
    trace_xi_ : float
        ``tr(Sigma_xi)``.
    expansion_ : float
        ``tr(Sigma_h) = tr(Sigma_s) + tr(Sigma_xi)``.
    invariant_share_ : float
        ``tr(Sigma_s) / tr(Sigma_h)``.
    shrinkage_s_ : float
        Shrinkage applied to Sigma_s by the estimator (NaN if it has none).
    shrinkage_xi_ : float
        Shrinkage applied to Sigma_xi.

    See Also
    --------
    skicr.metrics.icr_score : ICR of grouped views in one call.
    skicr.ICRScorer : label-free scorer for cross-validation.
    sklearn.discriminant_analysis.LinearDiscriminantAnalysis : the same
        generalized eigenproblem with labelled classes.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr import InvariantResidualDecomposer
    >>> rng = np.random.default_rng(0)
    >>> views = rng.normal(size=(100, 1, 6)) + 0.3 * rng.normal(size=(100, 4, 6))
    >>> dec = InvariantResidualDecomposer(n_components=2).fit(views)
    >>> dec.transform(views).shape
    (100, 2)
    >>> bool(dec.icr_ < 0.2)
    True
    """

    _parameter_constraints = {
        "n_views": [Interval(Integral, 2, None, closed="left"), None],
        "covariance_estimator": [HasMethods(["fit"]), None],
        "tau": [Interval(Real, 0, None, closed="left")],
        "tau_mode": [StrOptions({"relative", "absolute"})],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "bias_correction": ["boolean"],
    }

    def __init__(
        self,
        n_views=None,
        covariance_estimator=None,
        tau=1e-3,
        tau_mode="relative",
        n_components=None,
        bias_correction=False,
    ):
        self.n_views = n_views
        self.covariance_estimator = covariance_estimator
        self.tau = tau
        self.tau_mode = tau_mode
        self.n_components = n_components
        self.bias_correction = bias_correction

    # ---------------------------------------------------------------- input
    def _validate_views(self, X, *, reset, min_images=2):
        """Return validated views (n_images, n_views, d) as float64."""
        fitted_views = None if reset else getattr(self, "n_views_", None)
        X = reorder_view_columns(X)  # view{v}_ names that state the layout are honoured
        values, carried = view_values(X, defer_to_sklearn=True)
        if sparse.issparse(values) or values.ndim < 2:
            # sklearn's own messages for sparse and 1-D input (its checks expect "Reshape your data")
            validate_data(self, values, reset=reset, dtype=np.float64)
            raise ValueError(f"Grouped views must be 2-D or 3-D; got shape {np.shape(values)}.")
        if values.ndim == 3 and values.shape[0] < min_images:
            # the user's 3-D shape, not that of the flattened array sklearn would quote
            raise ValueError(
                f"Found {values.shape[0]} image(s) (views of shape {values.shape}) while a "
                f"minimum of {min_images} is required by {type(self).__name__}."
            )
        if self.n_views is None and fitted_views is not None and carried is None:
            n_views = fitted_views  # plain 2-D input after fitting: the fitted layout
        else:
            n_views = resolve_n_views(values, self.n_views, carried=carried)
        if fitted_views is not None and n_views != fitted_views:
            raise ValueError(f"X has {n_views} views per image but the decomposer was fitted with {fitted_views}.")
        if getattr(values, "ndim", None) == 3:
            X = values.reshape(values.shape[0], values.shape[1] * values.shape[2])
        elif not hasattr(X, "columns"):
            X = values  # keep DataFrames whole: validate_data records their column names
        X = validate_data(
            self, X, reset=reset, dtype=np.float64,
            ensure_min_samples=min_images, ensure_all_finite=True,
        )
        views = split_views(X, n_views)
        if reset:
            self.n_views_ = n_views
        return views

    # ---------------------------------------------------------------- fitting
    def fit(self, X, y=None):
        """Fit the decomposition on grouped views.

        Parameters
        ----------
        X : array-like of shape (n_images, n_views, d) or (n_images, n_views * d)
            Grouped views, one row per image.
        y : None
            Ignored; present for Pipeline compatibility.

        Returns
        -------
        self : InvariantResidualDecomposer
            Fitted estimator.
        """
        self._validate_params()
        check_covariance_estimator(self.covariance_estimator)
        views = self._validate_views(X, reset=True)
        # narrow matrices: one BLAS thread (skicr._utils.threads)
        with blas_threads(views.shape[2]):
            if self._dual_applies(views.shape):
                self._set_fitted_dual(views)
                return self
            self.__dict__.pop("_dual", None)
            self._stats = accumulate(views, GroupedViewStatistics(
                fourth_moments=needs_fourth_moments(self.covariance_estimator),
            ))
            needs_rows = not is_streaming_estimator(self.covariance_estimator)
            self._set_fitted(views if needs_rows else None)
        return self

    def partial_fit(self, X, y=None):
        """Add a batch of whole images to the statistics and refit the spectrum.

        Only streaming covariance estimators are supported (None,
        ``EmpiricalCovariance``, ``ShrunkCovariance``, ``LedoitWolf``,
        ``OAS``); the result equals :meth:`fit` on all images seen.

        Parameters
        ----------
        X : array-like of shape (n_images, n_views, d) or (n_images, n_views * d)
            A batch of grouped views (any number of whole images).
        y : None
            Ignored.

        Returns
        -------
        self : InvariantResidualDecomposer
            The estimator, with statistics of all images seen so far.
        """
        if getattr(self, "solver_", None) == "dual":
            raise ValueError(
                "This decomposer was fitted in the dual form (more features than residual rows), "
                "which keeps no d x d statistics to add to; partial_fit needs d <= N (V - 1) or a "
                "fresh estimator."
            )
        first = not hasattr(self, "_stats")
        if first:
            self._validate_params()
            check_covariance_estimator(self.covariance_estimator)
            check_streaming_estimator(self.covariance_estimator, "partial_fit")
        views = self._validate_views(X, reset=first, min_images=1)
        if first:
            self._stats = GroupedViewStatistics()
        accumulate(views, self._stats)
        if self._stats.n_images >= 2:
            self._set_fitted(None)
        return self

    def fit_statistics(self, statistics):
        """Fit the decomposition on accumulated grouped-view statistics.

        The end point of streaming and multi-process fits: views are added
        chunk by chunk to a :class:`~skicr.metrics.GroupedViewStatistics`
        (``update``, ``merge``, ``all_reduce`` across ``torch.distributed``
        processes) and never held together. The result equals :meth:`fit` on
        all the views those statistics saw. Only streaming covariance
        estimators are supported (None, ``EmpiricalCovariance``,
        ``ShrunkCovariance``, ``LedoitWolf``, ``OAS``). The statistics are
        copied, so later :meth:`partial_fit` calls add to the copy.

        Parameters
        ----------
        statistics : GroupedViewStatistics
            Statistics of at least 2 images with at least 2 views each.

        Returns
        -------
        self : InvariantResidualDecomposer
            Fitted estimator; ``n_features_in_`` is ``n_views * d`` as for
            flattened input.

        See Also
        --------
        skicr.extraction.fit_from_loader : Streams a DataLoader into this method.
        """
        self._validate_params()
        if not isinstance(statistics, GroupedViewStatistics):
            raise TypeError(
                "fit_statistics expects a skicr.metrics.GroupedViewStatistics; got "
                f"{type(statistics).__name__}. Use fit for arrays of views."
            )
        check_covariance_estimator(self.covariance_estimator)
        check_streaming_estimator(self.covariance_estimator, "fit_statistics")
        n_views, d = statistics.n_views, statistics.n_features
        if n_views is None or d is None or statistics.n_images < 2:
            raise ValueError(
                "fit_statistics needs statistics of at least 2 images; got "
                f"{statistics.n_images} image(s)."
            )
        if n_views < 2:
            raise ValueError(f"The statistics hold {n_views} view per image; at least 2 are needed.")
        if self.n_views is not None and self.n_views != n_views:
            raise ValueError(
                f"The statistics hold {n_views} views per image but n_views={self.n_views}."
            )
        arrays = (statistics.mean_sum, statistics.mean_scatter, statistics.residual_scatter)
        scalars = (statistics.mean_fourth, statistics.residual_fourth) if statistics.fourth_moments else ()
        if not (all(np.isfinite(a).all() for a in arrays) and np.isfinite(scalars).all()):
            raise ValueError("The statistics contain NaN or infinite values (non-finite views were added).")
        # reset what fit's validate_data would set, as for flattened input
        self.__dict__.pop("feature_names_in_", None)
        self.n_features_in_ = n_views * d
        self.n_views_ = n_views
        self._stats = statistics.copy()
        self._set_fitted(None)
        return self

    def _dual_applies(self, shape):
        """The dual form: wider than the residual rows, and an estimator of the form a X^T X + b I."""
        n_images, n_views, d = shape
        return (d > n_images * (n_views - 1) and not self.bias_correction
                and is_streaming_estimator(self.covariance_estimator))

    def _set_fitted_dual(self, views):
        result = dual_decompose(
            views, tau=self.tau, tau_mode=self.tau_mode, covariance_estimator=self.covariance_estimator,
        )
        self.__dict__.pop("_stats", None)
        self._dual = result
        self.solver_ = "dual"
        d = views.shape[2]
        self.n_features_view_ = d
        self.n_images_seen_ = views.shape[0]
        self.mean_ = result.mean
        self.covariance_s_ = self.covariance_xi_ = None
        self.tau_ = result.tau
        self.eigenvalues_ = result.eigenvalues
        self._directions = None
        rank = result.rank
        self.n_components_ = rank if self.n_components is None else min(self.n_components, rank)
        self._components = None  # built from the training views on first use (d x n_components)
        self.icr_ = result.icr
        self.mean_snr_ = result.mean_snr
        self.trace_s_ = result.trace_s
        self.trace_xi_ = result.trace_xi
        self.expansion_ = self.trace_s_ + self.trace_xi_
        self.invariant_share_ = result.invariant_share
        _check_dual_representable(result)
        self.shrinkage_s_ = result.shrinkage_s
        self.shrinkage_xi_ = result.shrinkage_xi
        self._n_features_out = self.n_components_

    @property
    def components_(self):
        """Fisher directions, one per row (see the class docstring)."""
        if "_components" not in self.__dict__:
            raise AttributeError("'InvariantResidualDecomposer' object has no attribute 'components_'")
        if self._components is None:
            self._components = self._dual.directions(self.n_components_)
        return self._components

    @components_.setter
    def components_(self, value):
        self._components = value

    def _set_fitted(self, views):
        self.solver_ = "primal"
        result = decompose(
            self._stats, tau=self.tau, tau_mode=self.tau_mode,
            covariance_estimator=self.covariance_estimator,
            bias_correction=self.bias_correction, views=views,
        )
        d = result.covariance_s.shape[0]
        _check_representable(result)
        self.n_features_view_ = d
        self.n_images_seen_ = self._stats.n_images
        self.mean_ = self._stats.mean
        self.covariance_s_ = result.covariance_s
        self.covariance_xi_ = result.covariance_xi
        self.tau_ = result.tau
        self.eigenvalues_ = result.eigenvalues
        self._directions = result.directions
        self.n_components_ = d if self.n_components is None else min(self.n_components, d)
        self.components_ = result.directions[: self.n_components_]
        self.icr_ = result.icr
        self.mean_snr_ = result.mean_snr
        self.trace_s_ = result.trace_s
        self.trace_xi_ = result.trace_xi
        self.expansion_ = result.expansion
        self.invariant_share_ = result.invariant_share
        self.shrinkage_s_ = result.shrinkage_s
        self.shrinkage_xi_ = result.shrinkage_xi
        self._n_features_out = self.n_components_

    # ---------------------------------------------------------------- outputs
    def transform(self, X):
        """Project each image's invariant part (mean of its views) on the top Fisher directions.

        Parameters
        ----------
        X : array-like of shape (n_images, n_views, d) or (n_images, n_views * d)
            Grouped views.

        Returns
        -------
        X_new : ndarray of shape (n_images, n_components)
            ``(m_i - mean_) @ components_.T``, one row per image.
        """
        check_is_fitted(self, "components_")
        views = self._validate_views(X, reset=False, min_images=1)
        with np.errstate(over="ignore", invalid="ignore"):
            projected = (views.mean(axis=1) - self.mean_) @ self.components_.T
        if not np.all(np.isfinite(projected)):
            raise ValueError(
                f"The projections of X (features up to about {np.max(np.abs(views)):.3g}) on the "
                "fitted directions overflow float64: X is far larger than the views the "
                "decomposer was fitted on. Bring X to the training views' scale first."
            )
        return projected

    def score(self, X, y=None):
        """Minus the held-out ICR of ``X`` along the fitted Fisher directions.

        On new views, ``lambda_i = w_i^T Sigma_s w_i / w_i^T (Sigma_xi + tau I) w_i``
        with the training directions ``w_i`` (all ``d`` of them) and the plain
        (unbiased empirical) covariances of ``X``, with the same ``tau`` rule
        and bias correction as the fit. The covariance estimator shapes the
        directions only: measuring every candidate on the same plain held-out
        covariances keeps a comparison of shrinkage choices fair (an
        estimator does not get to regularise the data it is judged on). With
        ``covariance_estimator=None`` and the training data, this is ``-icr_``.
        Each degenerate eigenspace of the training problem (a repeated
        eigenvalue: the eigenvalue 0 when the training images are no more
        than the features, and in the dual form (``solver_ == "dual"``) the
        directions outside the span of the training rows) is scored as one
        block by its ratio of traces, so that the score depends on no
        arbitrary basis (see :ref:`the user guide <heldout-icr>`). Greater is
        better, as sklearn expects.

        Parameters
        ----------
        X : array-like of shape (n_images, n_views, d) or (n_images, n_views * d)
            Held-out grouped views (at least 2 images).
        y : None
            Ignored.

        Returns
        -------
        score : float
            ``-ICR``, in [-1, 0).
        """
        check_is_fitted(self, "icr_")
        views = self._validate_views(X, reset=False)
        with blas_threads(views.shape[2]):
            if self.solver_ == "dual":
                return -dual_heldout_icr(self._dual, views, tau=self.tau, tau_mode=self.tau_mode)
            return -heldout_icr(
                self._directions, views, eigenvalues=self.eigenvalues_, tau=self.tau,
                tau_mode=self.tau_mode, covariance_estimator=None, bias_correction=self.bias_correction,
            )

    def score_statistics(self, statistics):
        """Minus the held-out ICR of the views behind ``statistics`` (streaming :meth:`score`).

        The held-out views are added to a
        :class:`~skicr.metrics.GroupedViewStatistics` batch by batch (or
        summed across processes) and never held together; the result equals
        :meth:`score` on those views (to round-off) for a decomposer fitted in
        the primal form (``solver_ == "primal"``, e.g. by
        :meth:`fit_statistics`).

        Parameters
        ----------
        statistics : GroupedViewStatistics
            Statistics of the held-out views (at least 2 images, the fitted
            number of views and features).

        Returns
        -------
        score : float
            ``-ICR``, in [-1, 0).

        Examples
        --------
        >>> import numpy as np
        >>> from skicr import InvariantResidualDecomposer
        >>> from skicr.metrics import accumulate
        >>> rng = np.random.default_rng(0)
        >>> views = rng.normal(size=(300, 1, 8)) + 0.5 * rng.normal(size=(300, 4, 8))
        >>> dec = InvariantResidualDecomposer().fit_statistics(accumulate(views[:200]))
        >>> bool(np.isclose(dec.score_statistics(accumulate(views[200:])),
        ...                 dec.score(views[200:])))
        True
        """
        check_is_fitted(self, "icr_")
        if not isinstance(statistics, GroupedViewStatistics):
            raise TypeError(
                "score_statistics expects a skicr.metrics.GroupedViewStatistics; got "
                f"{type(statistics).__name__}. Use score for arrays of views."
            )
        if self.solver_ == "dual":
            raise ValueError(
                "This decomposer was fitted in the dual form (more features than residual rows), "
                "which keeps no d x d directions to score statistics with; fit it with "
                "fit_statistics or on at least d / (n_views - 1) images."
            )
        if statistics.n_images < 2:
            raise ValueError(
                f"score_statistics needs statistics of at least 2 images; got {statistics.n_images}."
            )
        if statistics.n_views != self.n_views_ or statistics.n_features != self.n_features_view_:
            raise ValueError(
                f"The statistics hold {statistics.n_views} views of {statistics.n_features} "
                f"features but the decomposer was fitted with {self.n_views_} views of "
                f"{self.n_features_view_}."
            )
        with blas_threads(statistics.n_features):
            return -heldout_icr_from_statistics(
                self._directions, statistics, eigenvalues=self.eigenvalues_, tau=self.tau,
                tau_mode=self.tau_mode, bias_correction=self.bias_correction,
            )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.requires_fit = True
        return tags
