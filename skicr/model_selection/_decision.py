"""How much a noise-level choice means: the verdict on a criterion's curve, and selection rules.

A criterion measured on the same cross-validation folds at every grid point
gives a curve with a paired standard error: the difference between two grid
points is measured fold by fold, and its spread over folds says whether the
optimum really stands out.
"""

import numpy as np

__all__ = [
    "LayerChoiceWarning",
    "NoiseLevelDecisionWarning",
    "NoiseLevelGridWarning",
    "DECISIONS",
    "SELECTION_RULES",
    "LABEL_FREE_CRITERIA",
    "paired_standard_error",
    "curve_decision",
    "select_index",
    "fold_criteria",
    "COMMON_WIDTH",
    "LAYER_CRITERIA",
]

#: verdicts of :func:`curve_decision`
DECISIONS = ("interior", "grid_edge", "flat")
#: rules of :func:`select_index`
SELECTION_RULES = ("best", "one_se_low", "one_se_high", "knee")


#: label-free criteria measured on every fold: name -> True when lower is better.
#: "icr" is the held-out ICR (the decomposer fitted on the fold's training images,
#: scored on its test images); the others are measured on the test images alone.
LABEL_FREE_CRITERIA = {
    "icr": True,
    "icr_insample": True,
    "lidar": False,
    "rankme": False,
    # comparable across layers of different width (docs/layer_study.md)
    "icr_top": True,          # held-out ICR of the top COMMON_WIDTH training directions
    "icr_pca": True,          # held-out ICR after a PCA to COMMON_WIDTH dimensions
    "invariant_rank": False,  # effective rank of Sigma_s (expansion)
    "invariant_dims": False,  # sum lambda / (1 + lambda), held-out, bias-corrected
}
#: the criteria meant for comparing layers: measured in a joint (layer, sigma) search, or
#: when a scoring names one
LAYER_CRITERIA = ("icr_top", "icr_pca", "invariant_rank", "invariant_dims")
#: the fixed number of directions / common width of "icr_top" and "icr_pca" (the
#: narrowest candidate layer of the zoo has 16 channels)
COMMON_WIDTH = 16


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


class LayerChoiceWarning(UserWarning):
    """Warning: the layer was chosen without labels, and that choice is unreliable.

    Raised by :class:`~skicr.NoiseLevelSelector` after a joint
    (layer, sigma) search whenever a label-free criterion picked the layer
    among several. The ICR of layers of different width is not on one scale,
    and the label-free choice has lost tens of points of probe accuracy; the
    message quotes what the pre-registered layer study
    (``docs/layer_study.md``, :data:`skicr.recipes.LAYER_STUDY`) measured. Check the layer
    with a few labels: ``layer_scoring="probe", n_labels_per_class=5``
    (``NoiseLevelSelector.label_free_choice_`` says which part of a choice
    was label-free).

    Examples
    --------
    >>> import warnings
    >>> from skicr.model_selection import LayerChoiceWarning
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", LayerChoiceWarning)  # make it fatal
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


def fold_criteria(test_views, train_views=None, directions=None, common_width=COMMON_WIDTH,
                  layer_criteria=True):
    """The label-free criteria of one fold (all but the held-out ``"icr"``).

    Parameters
    ----------
    test_views : ndarray of shape (n_images, n_views, n_features)
    train_views : ndarray of shape (n_train, n_views, n_features) or None
        The fold's training views, for the held-out criteria ``icr_top``,
        ``icr_pca`` and ``invariant_dims`` (None: the test views themselves,
        i.e. in-sample, as with ``cv=1``).
    directions : ndarray of shape (k, n_features) or None
        Fisher directions fitted on ``train_views`` (best first), e.g. the
        fold decomposer's ``components_``; None fits them here.
    common_width : int, default=16
        The fixed number of directions of ``icr_top`` and the common width
        that ``icr_pca`` projects every layer to.
    layer_criteria : bool, default=True
        Also measure the criteria of :data:`LAYER_CRITERIA` (they fit a
        ``d x d`` spectrum on the training views; a single-layer search
        leaves them out).

    Returns
    -------
    values : dict
        One float per name of :data:`LABEL_FREE_CRITERIA` but ``"icr"`` (which
        needs the fitted decomposer and is measured by the caller), without
        those of :data:`LAYER_CRITERIA` unless ``layer_criteria``.
    """
    from sklearn.decomposition import PCA

    from ..metrics import (
        accumulate,
        decompose,
        heldout_icr,
        heldout_spectrum,
        icr_score,
        invariant_dimensions,
        invariant_effective_rank,
        lidar,
        rankme,
    )

    values = {
        "icr_insample": float(icr_score(test_views)),
        "lidar": float(lidar(test_views)),
        "rankme": float(rankme(test_views)),
    }
    if not layer_criteria:
        return values
    if train_views is None:
        train_views = test_views
    if directions is None or np.shape(directions)[0] < test_views.shape[2]:
        directions = decompose(accumulate(train_views)).directions
    width = min(common_width, test_views.shape[2])
    if width < test_views.shape[2]:
        # the same k-dimensional subspace for the fold's train and test views
        pca = PCA(n_components=width, svd_solver="full").fit(
            train_views.reshape(-1, train_views.shape[2]))

        def project(views):
            rows = pca.transform(views.reshape(-1, views.shape[2]))
            return rows.reshape(views.shape[0], views.shape[1], width)

        train_low, test_low = project(train_views), project(test_views)
        icr_pca = heldout_icr(decompose(accumulate(train_low)).directions, test_low)
    else:
        icr_pca = heldout_icr(directions, test_views)
    top = heldout_spectrum(directions[:width], test_views)
    return {
        **values,
        "icr_top": float(1.0 / (1.0 + top.mean())),
        "icr_pca": float(icr_pca),
        "invariant_rank": float(invariant_effective_rank(test_views)),
        "invariant_dims": float(invariant_dimensions(
            heldout_spectrum(directions, test_views, bias_correction=True))),
    }


def layer_choice_message(layer, criterion):
    """The :class:`LayerChoiceWarning` sentence: the label-free layer, and what the study measured.

    Parameters
    ----------
    layer : str
        The chosen layer.
    criterion : str
        The label-free criterion that chose it.

    Returns
    -------
    message : str
    """
    from ..recipes import LAYER_STUDY

    few = LAYER_STUDY["few_labels"]
    return (
        f"the layer {layer!r} was chosen without labels (by {criterion}); label-free layer "
        f"choices are unreliable ({LAYER_STUDY['document']}: {LAYER_STUDY['label_free']}). "
        f"Treat the layer as a guess and check it with a few labels: layer_scoring='probe', "
        f"n_labels_per_class={few['k']} ({few['summary']})."
    )
