"""The grid's per-task results as GridSearchCV-style ``cv_results_``, and the choice."""

import warnings

import numpy as np
from scipy.stats import rankdata

from ._decision import (
    LABEL_FREE_CRITERIA,
    SELECTION_RULES,
    NoiseLevelDecisionWarning,
    curve_decision,
    resolve_layer_scoring,
    select_index,
)
from ._evaluate import EXTRA_CRITERIA

__all__ = ["select_from_results"]


def _rank(values, greater_is_better):
    """Rank 1 = best; NaN ranks last."""
    key = -values if greater_is_better else values.copy()
    key = np.where(np.isnan(key), np.inf, key)
    return rankdata(key, method="min").astype(np.int32)


def format_results(sigmas, layers, results, with_probe, with_score=False):
    """One row per (layer, sigma), layer-major: a dict of arrays (GridSearchCV style).

    Each layer's rows are what a single-layer search at that layer reports.
    ``layers=None`` (the extractor's own layer) gives one row per sigma and
    no ``layer`` key.
    """
    keys = [None] if layers is None else list(layers)
    rows = [dict(r["layers"][key], extract_time=r["extract_time"]) for key in keys for r in results]
    row_sigmas = np.tile(np.asarray(sigmas, dtype=np.float64), len(keys))
    cv_results = {}
    params = np.empty(row_sigmas.size, dtype=object)
    if layers is None:
        params[:] = [{"sigma": float(s)} for s in row_sigmas]
    else:
        row_layers = np.empty(row_sigmas.size, dtype=object)
        row_layers[:] = np.repeat(np.asarray(layers, dtype=object), len(sigmas))
        cv_results["layer"] = row_layers
        params[:] = [{"layer": str(l), "sigma": float(s)} for l, s in zip(row_layers, row_sigmas)]
    cv_results.update(_scores_table(row_sigmas, rows, with_probe, with_score))
    # GridSearchCV's keys: each candidate's parameters, and one column per parameter
    cv_results["params"] = params
    if layers is not None:
        cv_results["param_layer"] = cv_results["layer"].copy()
    cv_results["param_sigma"] = row_sigmas.copy()
    return cv_results


def _scores_table(sigmas, results, with_probe, with_score=False):
    """Per-split lists from the grid -> a dict of arrays (GridSearchCV style)."""
    icr = np.asarray([r["icr"] for r in results], dtype=np.float64)
    cv_results = {
        "sigma": np.array(sigmas, dtype=np.float64),
        "mean_icr": icr.mean(axis=1),
        "std_icr": icr.std(axis=1),
    }
    cv_results["rank_icr"] = _rank(cv_results["mean_icr"], greater_is_better=False)
    measured = [name for name in EXTRA_CRITERIA if name in results[0]]
    for name in measured + (["score"] if with_score else []):
        values = np.asarray([r[name] for r in results], dtype=np.float64)
        cv_results[f"mean_{name}"] = values.mean(axis=1)
        cv_results[f"std_{name}"] = values.std(axis=1)
        cv_results[f"rank_{name}"] = _rank(
            cv_results[f"mean_{name}"], greater_is_better=not LABEL_FREE_CRITERIA.get(name, False)
        )
        for k in range(values.shape[1]):
            cv_results[f"split{k}_{name}"] = values[:, k]
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


def criterion_name(scoring):
    """The cv_results_ column name of a ``scoring`` parameter."""
    if callable(scoring):
        return "score"
    return "probe_accuracy" if scoring == "probe" else scoring


def _oriented_folds(cv_results, name):
    """(n_rows, n_folds) values of one criterion, lower is better; every fold it has."""
    n_folds = 0
    while f"split{n_folds}_{name}" in cv_results:
        n_folds += 1
    if n_folds == 0:
        raise ValueError(
            f"cv_results has no per-fold values of {name!r} (keys split0_{name}, ...); "
            "it was not measured by this search."
        )
    folds = np.column_stack([cv_results[f"split{k}_{name}"] for k in range(n_folds)])
    if not np.all(np.isfinite(folds)):
        raise ValueError(f"the {name} is not finite at every grid point; cannot choose.")
    return folds if LABEL_FREE_CRITERIA.get(name, False) else -folds


def _layer_blocks(cv_results):
    """(start, stop) row ranges of each layer (layer-major rows); one block without layers."""
    n_rows = len(cv_results["sigma"])
    if "layer" not in cv_results:
        return [(0, n_rows)]
    layers = np.asarray(cv_results["layer"], dtype=object)
    starts = [0] + [i for i in range(1, n_rows) if layers[i] != layers[i - 1]]
    return list(zip(starts, starts[1:] + [n_rows]))


def select_from_results(cv_results, scoring="icr", selection_rule="one_se_low",
                        layer_scoring="auto"):
    """The (layer, sigma) row a search's results choose, and how much the choice means.

    The procedure of :class:`~skicr.NoiseLevelSelector`, as a function of
    its ``cv_results_`` (so that other procedures can be compared on one
    search without running the backbone again); the defaults are the
    selector's, so ``select_from_results(selector.cv_results_)`` replays a
    selector fitted with its defaults. ``layer_scoring="joint"``: the optimum
    of ``scoring`` over every row, then ``selection_rule`` within its layer.
    A criterion name: each layer first gets its own sigma (``scoring`` and
    ``selection_rule`` on that layer's curve), and ``layer_scoring`` compares
    the layers at those sigmas. ``"auto"`` resolves as in the selector
    (:data:`skicr.model_selection.LAYER_SEARCH_DEFAULTS`).

    Parameters
    ----------
    cv_results : dict
        ``cv_results_`` of a fitted :class:`~skicr.NoiseLevelSelector` (with or
        without a ``layer`` key); every criterion used must have its per-fold
        ``split{k}_<name>`` columns.
    scoring : str, default="icr"
        Criterion of the sigma choice: a label-free criterion
        (``"icr"``, ``"icr_insample"``, ``"lidar"``, ``"rankme"``,
        ``"icr_top"``, ``"icr_pca"``, ``"invariant_rank"``,
        ``"invariant_dims"``), ``"probe"`` (the probe accuracy) or
        ``"score"`` (a callable scoring's column).
    selection_rule : {"best", "one_se_low", "one_se_high", "knee"}, default="one_se_low"
        How a curve over sigma picks its point (see
        :class:`~skicr.NoiseLevelSelector`).
    layer_scoring : str or None, default="auto"
        How the layers are compared: ``"auto"`` (the layer study's procedure,
        layers by ``"icr_top"``; the joint optimum when ``scoring="probe"``),
        ``"joint"`` (None means the same), or a criterion comparing the layers
        at their own sigma (same names as ``scoring``). Ignored without a
        ``layer`` key.

    Returns
    -------
    best_index : int
        The chosen row of ``cv_results``.
    decision : {"interior", "grid_edge", "flat"}
        The verdict on the ``scoring`` curve of the chosen layer (see
        ``NoiseLevelSelector.decision_``).

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.model_selection import select_from_results
    >>> cv_results = {"layer": np.array(["a", "a", "b", "b"], dtype=object),
    ...               "sigma": np.array([0.1, 1.0, 0.1, 1.0]),
    ...               "split0_icr": np.array([0.30, 0.40, 0.50, 0.45]),
    ...               "split1_icr": np.array([0.32, 0.41, 0.52, 0.44]),
    ...               "split0_invariant_dims": np.array([2.0, 1.0, 9.0, 8.0]),
    ...               "split1_invariant_dims": np.array([2.5, 1.0, 8.0, 8.5])}
    >>> select_from_results(cv_results, layer_scoring="joint")[0]   # lowest ICR: layer a
    0
    >>> select_from_results(cv_results, selection_rule="best",
    ...                     layer_scoring="invariant_dims")[0]
    3
    """
    if selection_rule not in SELECTION_RULES:
        raise ValueError(f"selection_rule must be one of {SELECTION_RULES}; got {selection_rule!r}.")
    oriented = _oriented_folds(cv_results, criterion_name(scoring))
    blocks = _layer_blocks(cv_results)
    layer_scoring = resolve_layer_scoring(layer_scoring, scoring, "layer" in cv_results)
    if layer_scoring in (None, "joint"):
        best_row = int(np.argmin(oriented.mean(axis=1)))
        start, stop = next(block for block in blocks if block[0] <= best_row < block[1])
        curve = oriented[start:stop]
        return start + select_index(curve, selection_rule), curve_decision(curve, best_row - start)
    by_layer = _oriented_folds(cv_results, criterion_name(layer_scoring))
    candidates = [start + select_index(oriented[start:stop], selection_rule)
                  for start, stop in blocks]
    chosen = int(np.argmin([by_layer[row].mean() for row in candidates]))
    start, stop = blocks[chosen]
    curve = oriented[start:stop]
    return candidates[chosen], curve_decision(curve, int(np.argmin(curve.mean(axis=1))))


def select(cv_results, scoring, rule, layer_scoring="auto"):
    """The chosen row and what it means: (best index, best score, decision).

    :func:`select_from_results`, then the verdict written to
    ``cv_results["decision"]`` and, when it is not "interior", a
    :class:`NoiseLevelDecisionWarning`. The best score is that of ``scoring``
    at the chosen row, greater is better (minus the ICR).
    """
    name = criterion_name(scoring)
    best, decision = select_from_results(cv_results, scoring, rule, layer_scoring)
    mean = float(-_oriented_folds(cv_results, name)[best].mean())  # greater is better
    verdicts = np.empty(cv_results["sigma"].size, dtype=object)
    verdicts[:] = decision
    cv_results["decision"] = verdicts
    if decision != "interior":
        where = "an end of the grid" if decision == "grid_edge" else (
            "a flat part of the curve (its advantage over a neighbouring sigma is below the "
            "fold-to-fold standard error)")
        warnings.warn(
            f"the {name} optimum lies at {where}, so sigma={float(cv_results['sigma'][best]):g} "
            "is not a measured semantic window. Widen the sigma grid, try another layer, or "
            "use stronger views (augmentation).",
            NoiseLevelDecisionWarning,
            stacklevel=4,  # the caller of fit (through sklearn's fit wrapper)
        )
    return best, mean, decision


def surface(cv_results, key, layers, sigmas):
    """``cv_results[key]`` as a layers x sigmas DataFrame."""
    import pandas as pd

    values = np.asarray(cv_results[key], dtype=np.float64)
    return pd.DataFrame(
        values.reshape(len(layers), sigmas.size),
        index=pd.Index(list(layers), name="layer"),
        columns=pd.Index(sigmas.copy(), name="sigma"),
    )
