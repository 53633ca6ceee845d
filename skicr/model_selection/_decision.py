"""How much a noise-level choice means: the verdict on a criterion's curve, and selection rules.

A criterion measured on the same cross-validation folds at every grid point
gives a curve with a paired standard error: the difference between two grid
points is measured fold by fold, and its spread over folds says whether the
optimum really stands out.
"""

import numpy as np

__all__ = [
    "NoiseLevelDecisionWarning",
    "NoiseLevelGridWarning",
    "DECISIONS",
    "SELECTION_RULES",
    "LABEL_FREE_CRITERIA",
    "paired_standard_error",
    "curve_decision",
    "select_index",
    "fold_criteria",
]

#: verdicts of :func:`curve_decision`
DECISIONS = ("interior", "grid_edge", "flat")
#: rules of :func:`select_index`
SELECTION_RULES = ("best", "one_se_low", "one_se_high", "knee")


#: label-free criteria measured on every fold: name -> True when lower is better.
#: "icr" is the held-out ICR (the decomposer fitted on the fold's training images,
#: scored on its test images); the others are measured on the test images alone.
LABEL_FREE_CRITERIA = {"icr": True, "icr_insample": True, "lidar": False, "rankme": False}


class NoiseLevelGridWarning(UserWarning):
    """Warning: some grid sigmas are not distinct noise levels for this backbone.

    A VP/DDPM schedule runs a sigma at its nearest timestep; grid sigmas that
    share a timestep are one point, scored once
    (``NoiseLevelSelector.clamped_sigmas_`` lists them).

    Examples
    --------
    >>> import warnings
    >>> from skicr.model_selection import NoiseLevelGridWarning
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", NoiseLevelGridWarning)  # said once, known
    """


class NoiseLevelDecisionWarning(UserWarning):
    """Warning: the chosen noise level means little.

    The criterion's optimum lies at an end of the grid, or does not stand out
    from its neighbours by more than their fold standard error (a flat
    curve); ``NoiseLevelSelector.decision_`` says which. Widen the grid,
    try another layer, or use stronger views.

    Examples
    --------
    >>> import warnings
    >>> from skicr.model_selection import NoiseLevelDecisionWarning
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", NoiseLevelDecisionWarning)  # make it fatal
    """


def paired_standard_error(fold_values, reference):
    """Standard error over folds of each grid point's difference to grid point ``reference``.

    Parameters
    ----------
    fold_values : ndarray of shape (n_points, n_folds)
        A criterion per grid point and fold (the same folds at every point).
    reference : int
        Index of the reference grid point.

    Returns
    -------
    se : ndarray of shape (n_points,)
        0 at ``reference``; 0 everywhere with a single fold.
    """
    values = np.asarray(fold_values, dtype=np.float64)
    if values.shape[1] < 2:
        return np.zeros(values.shape[0])
    diff = values - values[reference]
    return diff.std(axis=1, ddof=1) / np.sqrt(values.shape[1])


def curve_decision(fold_values, best_index):
    """Verdict on the optimum of a lower-is-better curve.

    Parameters
    ----------
    fold_values : ndarray of shape (n_points, n_folds)
        Lower is better.
    best_index : int
        The optimum (lowest fold mean).

    Returns
    -------
    decision : {"interior", "grid_edge", "flat"}
        ``"grid_edge"``: the optimum is the first or last grid point (the
        curve may keep falling beyond the grid); ``"flat"``: its advantage
        over a neighbour is below the paired fold standard error of that
        difference; ``"interior"`` otherwise. A one-point grid is an edge.
    """
    values = np.asarray(fold_values, dtype=np.float64)
    n_points = values.shape[0]
    if best_index in (0, n_points - 1):
        return "grid_edge"
    mean = values.mean(axis=1)
    se = paired_standard_error(values, best_index)
    neighbours = [best_index - 1, best_index + 1]
    advantage = mean[neighbours] - mean[best_index]
    # below the fold noise of the difference (a tie with no spread is flat too)
    if np.any((advantage < se[neighbours]) | (advantage <= 0)):
        return "flat"
    return "interior"


def select_index(fold_values, rule="best"):
    """Grid point chosen from a lower-is-better curve by a selection rule.

    Parameters
    ----------
    fold_values : ndarray of shape (n_points, n_folds)
        Lower is better; grid points in increasing sigma.
    rule : {"best", "one_se_low", "one_se_high", "knee"}, default="best"
        ``"best"``: the lowest fold mean. ``"one_se_low"`` / ``"one_se_high"``:
        the smallest / largest sigma whose mean exceeds the lowest by at most
        the paired standard error of that difference. ``"knee"``: on the part
        of the curve from its minimum to the grid's end, the point furthest
        below the chord joining the two ends (the last point before the curve
        rises away).

    Returns
    -------
    index : int
    """
    values = np.asarray(fold_values, dtype=np.float64)
    mean = values.mean(axis=1)
    best = int(np.argmin(mean))
    if rule == "best":
        return best
    if rule in ("one_se_low", "one_se_high"):
        within = np.flatnonzero(mean - mean[best] <= paired_standard_error(values, best))
        return int(within.min() if rule == "one_se_low" else within.max())
    if rule == "knee":
        if best == mean.size - 1:
            return best
        segment = mean[best:]
        x = np.linspace(0.0, 1.0, segment.size)
        chord = segment[0] + (segment[-1] - segment[0]) * x
        return best + int(np.argmax(chord - segment))
    raise ValueError(f"rule must be one of {SELECTION_RULES}; got {rule!r}.")


def fold_criteria(test_views):
    """The label-free criteria of one fold measured on its test views alone.

    Parameters
    ----------
    test_views : ndarray of shape (n_images, n_views, n_features)

    Returns
    -------
    values : dict
        ``{"icr_insample": ..., "lidar": ..., "rankme": ...}`` (the held-out
        ``"icr"`` needs the fitted decomposer and is measured by the caller).
    """
    from ..metrics import icr_score, lidar, rankme

    return {
        "icr_insample": float(icr_score(test_views)),
        "lidar": float(lidar(test_views)),
        "rankme": float(rankme(test_views)),
    }
