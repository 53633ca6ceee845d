"""The grid's per-task results as GridSearchCV-style ``cv_results_``, and the choice."""

import warnings

import numpy as np
from scipy.stats import rankdata

from ._decision import LABEL_FREE_CRITERIA, NoiseLevelDecisionWarning, curve_decision, select_index
from ._evaluate import EXTRA_CRITERIA

__all__ = []


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
    for name in EXTRA_CRITERIA + (["score"] if with_score else []):
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


def select(cv_results, scoring, rule, n_splits, n_sigmas):
    """The chosen row and what it means: (best index, best score, decision).

    The scoring criterion's fold values form a curve over sigma (per layer);
    ``rule`` picks its point (within the layer of the overall optimum) and
    :func:`curve_decision` judges the optimum. The best score is greater is
    better (minus the ICR). A decision other than "interior" warns with
    :class:`NoiseLevelDecisionWarning`.
    """
    name = criterion_name(scoring)
    lower_is_better = LABEL_FREE_CRITERIA.get(name, False)
    folds = np.column_stack([cv_results[f"split{k}_{name}"] for k in range(n_splits)])
    if not np.all(np.isfinite(folds)):
        raise ValueError(f"the {name} is not finite at every sigma; cannot choose a noise level.")
    oriented = folds if lower_is_better else -folds  # lower is better from here on
    best_row = int(np.argmin(oriented.mean(axis=1)))
    start = (best_row // n_sigmas) * n_sigmas  # the layer's rows (layer-major)
    curve = oriented[start:start + n_sigmas]
    best = start + select_index(curve, rule)
    decision = curve_decision(curve, best_row - start)
    mean = float(folds[best].mean())
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
    return best, (-mean if lower_is_better else mean), decision


def surface(cv_results, key, layers, sigmas):
    """``cv_results[key]`` as a layers x sigmas DataFrame."""
    import pandas as pd

    values = np.asarray(cv_results[key], dtype=np.float64)
    return pd.DataFrame(
        values.reshape(len(layers), sigmas.size),
        index=pd.Index(list(layers), name="layer"),
        columns=pd.Index(sigmas.copy(), name="sigma"),
    )
