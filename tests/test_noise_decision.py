"""Verdicts on a criterion's curve (interior / grid edge / flat) and the selection rules."""

import numpy as np
import pytest

from skicr.model_selection._decision import curve_decision, paired_standard_error, select_index


PATTERN = np.array([1.0, -1.0, 1.0, -1.0, 0.0])  # std (ddof=1) 1 over 5 folds


def _folds(mean, amplitude):
    """Fold values ``mean + amplitude * PATTERN``: the paired standard error between grid
    points i and j is ``|amplitude_i - amplitude_j| / sqrt(5)``."""
    amplitude = np.broadcast_to(np.asarray(amplitude, dtype=float), (len(mean),))
    return np.asarray(mean, dtype=float)[:, None] + amplitude[:, None] * PATTERN


def test_paired_standard_error_by_hand():
    values = np.array([[1.0, 2.0, 3.0], [1.5, 2.0, 4.5]])
    diff = np.array([0.5, 0.0, 1.5])
    expected = diff.std(ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(paired_standard_error(values, 0), [0.0, expected])
    # a shift shared by every fold (the same images) cancels in the paired difference
    shared = values + np.array([10.0, -3.0, 7.0])
    np.testing.assert_allclose(paired_standard_error(shared, 0), [0.0, expected])
    assert np.all(paired_standard_error(values[:, :1], 0) == 0)


def test_decision_interior_edge_flat():
    u_shape = _folds([0.5, 0.4, 0.3, 0.4, 0.5], [0.01, 0.01, 0.0, 0.01, 0.01])
    assert curve_decision(u_shape, 2) == "interior"  # advantage 0.1, SE 0.0045
    rising = _folds([0.3, 0.4, 0.5, 0.6, 0.7], 0.0)
    assert curve_decision(rising, 0) == "grid_edge"
    assert curve_decision(rising[::-1], 4) == "grid_edge"
    # a minimum 0.001 deep, paired SE 0.0045: it does not stand out
    shallow = _folds([0.5, 0.401, 0.4, 0.401, 0.5], [0.01, 0.01, 0.0, 0.01, 0.01])
    assert curve_decision(shallow, 2) == "flat"
    # one side clear, the other within the noise: still flat
    one_side = _folds([0.5, 0.45, 0.4, 0.401, 0.5], [0.0, 0.0, 0.0, 0.01, 0.0])
    assert curve_decision(one_side, 2) == "flat"
    exact_tie = np.array([[0.5] * 3, [0.4] * 3, [0.4] * 3, [0.6] * 3])
    assert curve_decision(exact_tie, 1) == "flat"
    assert curve_decision(np.ones((1, 3)), 0) == "grid_edge"


def test_select_index_rules():
    # a long flat valley from index 1 to 4, then a steep rise
    values = _folds([0.60, 0.400, 0.401, 0.402, 0.403, 0.7, 0.9],
                    [0.01, 0.0, 0.01, 0.01, 0.01, 0.01, 0.01])
    best = select_index(values, "best")
    assert best == int(np.argmin(values.mean(axis=1)))
    low, high = select_index(values, "one_se_low"), select_index(values, "one_se_high")
    assert low <= best <= high
    assert low == 1 and high == 4  # the valley, both ends
    assert select_index(values, "knee") == 4  # the last point before the rise
    rising = _folds([0.3, 0.31, 0.5, 0.8], 0.0)
    assert select_index(rising, "knee") == 1
    assert select_index(rising[::-1], "knee") == 3  # minimum at the end: nothing to the right
    with pytest.raises(ValueError, match="rule"):
        select_index(values, "median")
