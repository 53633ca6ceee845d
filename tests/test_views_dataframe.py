"""DataFrame column names that state the view layout are honoured or refused (issue 14)."""

import numpy as np
import pandas as pd
import pytest

from skicr import InvariantResidualDecomposer
from skicr.metrics import icr_score
from skicr.views import view_column_order


@pytest.fixture
def views():
    rng = np.random.default_rng(0)
    # views that differ in their noise level, so a mixed-up split changes ICR
    return rng.normal(size=(60, 1, 5)) + np.array([0.1, 0.5, 2.0])[None, :, None] * rng.normal(size=(60, 3, 5))


def _frame(views, feature_major):
    n, v, d = views.shape
    if feature_major:
        columns = [f"view{k}_f{j}" for j in range(d) for k in range(v)]
        data = views.transpose(0, 2, 1).reshape(n, -1)
    else:
        columns = [f"view{k}_f{j}" for k in range(v) for j in range(d)]
        data = views.reshape(n, -1)
    return pd.DataFrame(data, columns=columns)


def test_feature_major_names_are_honoured(views):
    truth = icr_score(views)
    frame = _frame(views, feature_major=True)
    assert icr_score(frame) == pytest.approx(truth, rel=1e-12)
    # a split by position (the old behaviour) gives another number
    assert icr_score(frame.to_numpy(), n_views=3) != pytest.approx(truth, rel=1e-3)
    fitted = InvariantResidualDecomposer().fit(frame)
    assert fitted.icr_ == pytest.approx(truth, rel=1e-12)
    # transform and score read the names the same way, in either stored order
    np.testing.assert_allclose(fitted.transform(frame), fitted.transform(_frame(views, False)), atol=1e-12)
    assert fitted.score(frame) == pytest.approx(-truth, rel=1e-10)


def test_shuffled_columns_are_put_back(views):
    frame = _frame(views, feature_major=False)
    shuffled = frame[np.random.default_rng(1).permutation(frame.columns)]
    assert icr_score(shuffled) == pytest.approx(icr_score(views), rel=1e-12)


@pytest.mark.parametrize("columns, message", [
    (["view0_a", "view0_a", "view1_a", "view1_b"], "twice"),
    (["view0_a", "view0_b", "view1_a", "view1_c"], "contradict"),
    (["view0_a", "view2_a"], "consecutive"),
])
def test_contradictory_names_are_refused(columns, message):
    frame = pd.DataFrame(np.zeros((4, len(columns))), columns=columns)
    with pytest.raises(ValueError, match=message):
        icr_score(frame)
    with pytest.raises(ValueError, match=message):
        InvariantResidualDecomposer().fit(frame)


def test_column_order_of_names():
    assert view_column_order(["view0_a", "view0_b", "view1_a", "view1_b"]) == (2, None)
    n_views, order = view_column_order(["view0_a", "view1_a", "view0_b", "view1_b"])
    assert n_views == 2 and order.tolist() == [0, 2, 1, 3]
    assert view_column_order(["a", "view0_b"]) == (None, None)
