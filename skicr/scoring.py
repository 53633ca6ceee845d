"""ICRScorer: a label-free scorer for cross-validation and hyper-parameter search."""

from sklearn.pipeline import Pipeline

from .decomposition import InvariantResidualDecomposer

__all__ = ["ICRScorer", "icr_scorer"]


def _find_decomposer(estimator):
    """Return (steps before the decomposer, decomposer) of an estimator or Pipeline."""
    if isinstance(estimator, InvariantResidualDecomposer):
        return [], estimator
    if isinstance(estimator, Pipeline):
        steps = [step for _, step in estimator.steps]
        for position in range(len(steps) - 1, -1, -1):
            if isinstance(steps[position], InvariantResidualDecomposer):
                return steps[:position], steps[position]
    raise TypeError(
        "ICRScorer needs an InvariantResidualDecomposer or a Pipeline that contains one; "
        f"got {type(estimator).__name__}."
    )


class ICRScorer:
    """Label-free scorer: minus the held-out ICR of a fitted decomposer.

    ``scorer(estimator, X, y=None)`` works on a fitted
    :class:`~skicr.InvariantResidualDecomposer` or on a fitted Pipeline that
    contains one: the steps before the decomposer transform ``X`` first (for
    example a :class:`~skicr.FeatureExtractor`), steps after it (a probe) are
    ignored. ``y`` is ignored, so it can rank settings without labels, e.g.
    covariance shrinkage choices in ``GridSearchCV(..., scoring=ICRScorer())``.

    Greater is better (the scorer returns ``-ICR``), as sklearn expects.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import cross_val_score
    >>> from skicr import ICRScorer, InvariantResidualDecomposer
    >>> rng = np.random.default_rng(0)
    >>> views = rng.normal(size=(60, 1, 4)) + 0.5 * rng.normal(size=(60, 3, 4))
    >>> scores = cross_val_score(InvariantResidualDecomposer(), views, cv=3,
    ...                          scoring=ICRScorer())
    >>> bool(np.all((scores < 0) & (scores > -1)))
    True
    """

    def __call__(self, estimator, X, y=None):
        """Return ``-ICR`` of ``X`` along the estimator's fitted Fisher directions.

        Parameters
        ----------
        estimator : InvariantResidualDecomposer or Pipeline
            Fitted.
        X : array-like
            Input of the estimator (images for a Pipeline that extracts
            features, grouped views for a bare decomposer).
        y : None
            Ignored.

        Returns
        -------
        score : float
            ``-ICR`` of ``X``, in [-1, 0); greater is better.
        """
        before, decomposer = _find_decomposer(estimator)
        for step in before:
            if step is None or step == "passthrough":
                continue
            X = step.transform(X)
        return decomposer.score(X)

    def __repr__(self):
        return "ICRScorer()"


icr_scorer = ICRScorer()
"""A ready :class:`ICRScorer` instance."""
