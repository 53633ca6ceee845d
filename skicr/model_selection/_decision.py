"""How much a noise-level choice means: the verdict on a criterion's curve, and selection rules.

A criterion measured on the same cross-validation folds at every grid point
gives a curve with a paired standard error: the difference between two grid
points is measured fold by fold, and its spread over folds says whether the
optimum really stands out.
"""

import copy

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
    "LAYER_SEARCH_DEFAULTS",
    "LAYER_STUDY",
    "resolve_layer_scoring",
    "describe_layer_procedure",
    "layer_choice_report",
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

#: The default procedure of a joint (layer, sigma) search, in one home: what
#: ``NoiseLevelSelector(layers=[...])`` runs with its default ``layer_scoring="auto"`` and
#: what ``skicr scan --layers`` runs. It is the candidate chosen on the development half of
#: the pre-registered layer study (docs/layer_study.md; the dev-only choice is
#: benchmarks/results/layer_study_choice.json): sigma within each layer by the held-out ICR
#: and the one-standard-error rule, then the layers compared at those sigmas by ``icr_top``
#: (the held-out ICR of the top ``COMMON_WIDTH`` Fisher directions, comparable across widths).
#: Keys are NoiseLevelSelector's parameter names: ``NoiseLevelSelector(**LAYER_SEARCH_DEFAULTS)``.
LAYER_SEARCH_DEFAULTS = {"scoring": "icr", "selection_rule": "one_se_low",
                         "layer_scoring": "icr_top"}

#: What the layer study measured for choosing the layer (held-out half, gap = points of probe
#: accuracy below the grid's best cell): the LayerChoiceWarning, ``layer_choice_`` and
#: ``skicr scan --layers`` quote it.
LAYER_STUDY = {
    "document": "docs/layer_study.md",
    "procedure": "per_layer(icr_top, one_se_low)",
    # the dev-chosen procedure (LAYER_SEARCH_DEFAULTS) and the previous default (the lowest
    # held-out ICR over all cells) on the four held-out denoisers; the goal was 80% within 2
    "heldout": {"within_2_points": "2 of 4", "mean_gap_points": 3.2, "worst_gap_points": 7.0,
                "goal_met": False},
    "joint_icr_heldout": {"within_2_points": "1 of 4", "mean_gap_points": 13.6,
                          "worst_gap_points": 39.2},
    # the label-free layer choice, in one sentence
    "label_free": (
        "its dev-chosen label-free procedure (sigma per layer by the held-out ICR, rule "
        "one_se_low; layers by icr_top) was within 2 points of the grid's best probe accuracy "
        "for 2 of 4 held-out denoisers (worst 7 points), the lowest held-out ICR over all "
        "cells for 1 of 4 (worst 39 points)"
    ),
    # the few-labels mode at k labelled images per class (layer_scoring="probe")
    "few_labels": {
        "k": 5,
        "summary": (
            "in the study, the layer chosen by a probe on 5 labelled images per class, sigma "
            "label-free, was within 2 points for 36% of the draws on the nine zoo models (mean "
            "gap 3.5 points): labels choose the layer, not the sigma within it"
        ),
    },
}

#: the values of ``layer_scoring`` that are not a criterion
LAYER_PROCEDURES = ("auto", "joint")


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
    among several. The ICR of layers of different width is not on one scale:
    in the layer study the lowest ICR over all cells lost up to 39 points of
    probe accuracy on held-out denoisers, and the default procedure up to 7.
    The message quotes what the pre-registered layer study
    (``docs/layer_study.md``, :data:`skicr.model_selection.LAYER_STUDY`) measured.
    Check the layer with a few labels: ``layer_scoring="probe", n_labels_per_class=5``
    (``NoiseLevelSelector.label_free_choice_`` says which part of a choice
    was label-free, ``NoiseLevelSelector.layer_choice_`` holds the whole
    report, message included).

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
                  layer_criteria=True, eigenvalues=None):
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
    eigenvalues : ndarray of shape (k,) or None
        The training eigenvalues of ``directions`` (the fold decomposer's
        ``eigenvalues_``), so that a degenerate training eigenspace is scored
        by a basis-independent value; None with ``directions`` given scores
        each direction on its own.

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
        fit = decompose(accumulate(train_views))
        directions, eigenvalues = fit.directions, fit.eigenvalues
    width = min(common_width, test_views.shape[2])
    if width < test_views.shape[2]:
        # the same k-dimensional subspace for the fold's train and test views
        pca = PCA(n_components=width, svd_solver="full").fit(
            train_views.reshape(-1, train_views.shape[2]))

        def project(views):
            rows = pca.transform(views.reshape(-1, views.shape[2]))
            return rows.reshape(views.shape[0], views.shape[1], width)

        train_low, test_low = project(train_views), project(test_views)
        low = decompose(accumulate(train_low))
        icr_pca = heldout_icr(low.directions, test_low, eigenvalues=low.eigenvalues)
    else:
        icr_pca = heldout_icr(directions, test_views, eigenvalues=eigenvalues)
    # all directions, then the top ones: a degenerate eigenspace is scored whole
    top = heldout_spectrum(directions, test_views, eigenvalues=eigenvalues)[:width]
    return {
        **values,
        "icr_top": float(1.0 / (1.0 + top.mean())),
        "icr_pca": float(icr_pca),
        "invariant_rank": float(invariant_effective_rank(test_views)),
        "invariant_dims": float(invariant_dimensions(
            heldout_spectrum(directions, test_views, eigenvalues=eigenvalues, bias_correction=True))),
    }


def resolve_layer_scoring(layer_scoring, scoring, layered):
    """What a ``layer_scoring`` parameter runs: ``"joint"``, a criterion name, or None.

    Parameters
    ----------
    layer_scoring : str or None
        ``"auto"``: with layers, ``"joint"`` when ``scoring="probe"`` (the probe's
        accuracy is on one scale across layers: the best cell over all of them), else
        ``LAYER_SEARCH_DEFAULTS["layer_scoring"]`` (the layer study's procedure).
        ``"joint"`` or None: the best ``scoring`` cell over all (layer, sigma) cells. A
        criterion name: each layer its own sigma, then the layers compared by it.
    scoring : str or callable
        The selector's ``scoring``.
    layered : bool
        Whether the search has layers (a ``layer`` key in ``cv_results_``).

    Returns
    -------
    resolved : str or None
        None without layers (one curve, nothing to compare); otherwise ``"joint"`` or
        the name of the criterion that compares the layers.
    """
    if not layered:
        return None
    if layer_scoring is None or layer_scoring == "joint":
        return "joint"
    if layer_scoring == "auto":
        return "joint" if scoring == "probe" else LAYER_SEARCH_DEFAULTS["layer_scoring"]
    return layer_scoring


def _name(scoring):
    return scoring if isinstance(scoring, str) else "score"


def describe_layer_procedure(scoring, selection_rule, layer_scoring):
    """One phrase naming a joint search's procedure (``layer_scoring`` resolved).

    Parameters
    ----------
    scoring : str or callable
        The criterion of the sigma choice.
    selection_rule : str
        The rule on each curve over sigma.
    layer_scoring : str
        ``"joint"`` or the criterion comparing the layers
        (:func:`resolve_layer_scoring`'s result).

    Returns
    -------
    phrase : str
    """
    if layer_scoring == "joint":
        return (f"the best {_name(scoring)} cell over all layers and sigmas, rule "
                f"{selection_rule} within its layer")
    return (f"sigma within each layer by {_name(scoring)} (rule {selection_rule}), then the "
            f"layers compared at those sigmas by {_name(layer_scoring)}")


def layer_choice_report(best_layer, *, scoring, selection_rule, layer_scoring,
                        label_free_choice, n_labels_per_class=None, n_layers=2):
    """What part of a joint (layer, sigma) choice used labels, and how reliable it is.

    The one source of ``NoiseLevelSelector.layer_choice_``, of the
    :class:`LayerChoiceWarning`'s message and of the ``layer_choice`` field of
    ``skicr scan --layers``'s ``scan.json``.

    Parameters
    ----------
    best_layer : str
        The chosen layer.
    scoring : str or callable
        The criterion of the sigma choice.
    selection_rule : str
        The rule on each curve over sigma.
    layer_scoring : str
        ``"joint"`` or the criterion that compared the layers (resolved).
    label_free_choice : dict
        ``{"sigma": bool, "layer": bool}``: which part of the choice used no label.
    n_labels_per_class : int or None, default=None
        The few-labels budget, if any.
    n_layers : int, default=2
        The number of candidate layers; with one, nothing was chosen among
        layers and the report says so (``settled`` is True).

    Returns
    -------
    report : dict
        ``label_free`` (the layer was chosen without labels), ``sigma_label_free``,
        ``by`` (the criterion that chose the layer), ``procedure`` (a phrase),
        ``study_procedure`` (whether it is the layer study's dev-chosen procedure,
        :data:`LAYER_SEARCH_DEFAULTS`), ``n_labels_per_class``, ``settled`` (False
        whenever the layer was chosen without labels: the study found that unreliable),
        ``study`` (:data:`LAYER_STUDY`) and ``message`` (the warning's sentence).
    """
    by = _name(scoring if layer_scoring == "joint" else layer_scoring)
    label_free = bool(label_free_choice["layer"])
    sigma_free = bool(label_free_choice["sigma"])
    procedure = describe_layer_procedure(scoring, selection_rule, layer_scoring)
    study_procedure = (scoring, selection_rule, layer_scoring) == tuple(
        LAYER_SEARCH_DEFAULTS[key] for key in ("scoring", "selection_rule", "layer_scoring"))
    few = LAYER_STUDY["few_labels"]
    if n_layers == 1:
        message = (f"the layer {best_layer!r} is the only candidate: no layer was chosen, "
                   f"sigma {'without labels' if sigma_free else 'by the probe'}.")
    elif label_free:
        which = "the layer study's procedure" if study_procedure else "not the study's default"
        message = (
            f"the layer {best_layer!r} was chosen without labels (by {by}: {procedure}; "
            f"{which}), and label-free layer choices are unreliable "
            f"({LAYER_STUDY['document']}: {LAYER_STUDY['label_free']}). Treat the layer as a "
            f"guess and check it with a few labels: layer_scoring='probe', "
            f"n_labels_per_class={few['k']} ({few['summary']})."
        )
    else:
        labels = ("every labelled image" if n_labels_per_class is None
                  else f"{n_labels_per_class} labelled images per class")
        how = (f"sigma within each layer without labels (by {_name(scoring)}, rule "
               f"{selection_rule})" if sigma_free else "sigma by the probe too")
        message = (f"the layer {best_layer!r} was chosen by the probe's accuracy on {labels}; "
                   f"{how}; {LAYER_STUDY['document']} measures how many labels it takes.")
    return {"label_free": label_free, "sigma_label_free": sigma_free, "by": by,
            "procedure": procedure, "study_procedure": bool(study_procedure),
            "n_labels_per_class": n_labels_per_class,
            "settled": not label_free or n_layers == 1,
            "study": copy.deepcopy(LAYER_STUDY), "message": message}
