import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.covariance import OAS, LedoitWolf, MinCovDet, ShrunkCovariance
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline

from skicr import ICRScorer, InvariantResidualDecomposer
from skicr.views import ViewArray, view_feature_names
from skicr.metrics import accumulate, icr_score

from _synthetic import assert_same_fit


@pytest.fixture
def views():
    rng = np.random.default_rng(0)
    return rng.normal(size=(80, 1, 6)) * np.arange(1, 7) + rng.normal(size=(80, 4, 6))


def test_fitted_attributes(views):
    dec = InvariantResidualDecomposer(n_components=3).fit(views)
    d = 6
    assert dec.n_views_ == 4 and dec.n_features_view_ == 6 and dec.n_features_in_ == 24
    assert dec.covariance_s_.shape == dec.covariance_xi_.shape == (d, d)
    assert dec.eigenvalues_.shape == (d,) and np.all(np.diff(dec.eigenvalues_) <= 0)
    assert dec.components_.shape == (3, d)
    assert dec.icr_ == pytest.approx(1 / (1 + dec.eigenvalues_.mean()))
    assert dec.icr_ == pytest.approx(icr_score(views))
    assert dec.expansion_ == pytest.approx(np.trace(dec.covariance_s_) + np.trace(dec.covariance_xi_))
    assert dec.invariant_share_ == pytest.approx(dec.trace_s_ / dec.expansion_)
    assert dec.tau_ == pytest.approx(1e-3 * dec.trace_xi_ / d)
    assert InvariantResidualDecomposer(tau=0.0).fit(views).tau_ == 0.0


def test_flat_3d_viewarray_and_dataframe_inputs_agree(views):
    flat = views.reshape(80, -1)
    expected = InvariantResidualDecomposer().fit(views).icr_
    assert InvariantResidualDecomposer(n_views=4).fit(flat).icr_ == expected
    assert InvariantResidualDecomposer().fit(ViewArray(flat, 4)).icr_ == expected
    frame = pd.DataFrame(flat, columns=view_feature_names(4, [f"f{j}" for j in range(6)]))
    dec = InvariantResidualDecomposer().fit(frame)
    assert dec.icr_ == pytest.approx(expected, rel=1e-12) and dec.n_views_ == 4
    assert list(dec.feature_names_in_[:2]) == ["view0_f0", "view0_f1"]


def test_transform_projects_image_means(views):
    dec = InvariantResidualDecomposer(n_components=2).fit(views)
    out = dec.transform(views)
    expected = (views.mean(axis=1) - views.mean(axis=(0, 1))) @ dec.components_.T
    np.testing.assert_allclose(out, expected, atol=1e-12)
    assert list(dec.get_feature_names_out()) == [
        "invariantresidualdecomposer0", "invariantresidualdecomposer1",
    ]
    frame = dec.set_output(transform="pandas").transform(views.reshape(80, -1))
    assert isinstance(frame, pd.DataFrame) and frame.shape == (80, 2)


def test_score_is_minus_heldout_icr(views):
    dec = InvariantResidualDecomposer().fit(views)
    assert dec.score(views) == pytest.approx(-dec.icr_, rel=1e-10)
    train, test = views[:60], views[60:]
    dec.fit(train)
    held_out = -dec.score(test)
    assert 0 < held_out <= 1
    # fitted directions are optimal in-sample, so held-out data looks dirtier on average
    assert held_out >= dec.icr_ * 0.8


@pytest.mark.parametrize("estimator", [None, ShrunkCovariance(), LedoitWolf(), OAS()])
def test_partial_fit_equals_fit(views, estimator):
    full = InvariantResidualDecomposer(covariance_estimator=estimator).fit(views)
    streamed = InvariantResidualDecomposer(covariance_estimator=estimator)
    for start in range(0, 80, 25):
        streamed.partial_fit(views[start:start + 25])
    np.testing.assert_allclose(streamed.covariance_s_, full.covariance_s_, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(streamed.eigenvalues_, full.eigenvalues_, rtol=1e-8)
    assert streamed.icr_ == pytest.approx(full.icr_, rel=1e-10)
    assert streamed.n_images_seen_ == 80
    # streamed == merged == one-pass, with the suite's one "same fit" check
    merged = InvariantResidualDecomposer(covariance_estimator=estimator).fit_statistics(
        accumulate(views[:40]).merge(accumulate(views[40:]))
    )
    assert_same_fit(merged, full, rtol=1e-8)
    assert_same_fit(streamed, full, rtol=1e-8)


def test_partial_fit_rejects_non_streaming_estimators(views):
    with pytest.raises(ValueError, match="streaming covariance estimator"):
        InvariantResidualDecomposer(covariance_estimator=MinCovDet()).partial_fit(views)


def test_bias_correction_changes_sigma_s_only(views):
    plug = InvariantResidualDecomposer(tau=0).fit(views)
    corrected = InvariantResidualDecomposer(tau=0, bias_correction=True).fit(views)
    np.testing.assert_allclose(corrected.covariance_xi_, plug.covariance_xi_)
    assert corrected.trace_s_ < plug.trace_s_
    assert corrected.icr_ > plug.icr_


def test_bad_inputs(views):
    dec = InvariantResidualDecomposer()
    with pytest.raises(NotFittedError):
        dec.transform(views)
    with pytest.raises(NotFittedError):
        dec.score(views)
    with pytest.raises(ValueError, match="NaN"):
        bad = views.copy()
        bad[3, 1, 2] = np.nan
        dec.fit(bad)
    with pytest.raises(ValueError, match="At least 2 views"):
        dec.fit(views[:, :1])
    with pytest.raises(ValueError, match="minimum of 2"):
        dec.fit(views[:1])
    with pytest.raises(ValueError, match="not divisible"):
        InvariantResidualDecomposer(n_views=5).fit(views.reshape(80, -1))
    with pytest.raises(ValueError, match="Cannot tell how many views"):
        dec.fit(views.reshape(80, -1))
    with pytest.raises(ValueError, match="disagrees"):
        InvariantResidualDecomposer(n_views=3).fit(views)
    dec.fit(views)
    with pytest.raises(ValueError, match="features"):
        dec.transform(views[:, :, :5])
    with pytest.raises(ValueError, match="views per image"):
        dec.transform(views[:, :3])
    with pytest.raises(ValueError, match="tau"):
        InvariantResidualDecomposer(tau=-1.0).fit(views)
    with pytest.raises(ValueError, match="covariance_estimator"):
        InvariantResidualDecomposer(covariance_estimator="ledoit").fit(views)


def test_clone_pickle_and_determinism(views):
    dec = InvariantResidualDecomposer(covariance_estimator=LedoitWolf(), n_components=2).fit(views)
    restored = pickle.loads(pickle.dumps(dec))
    np.testing.assert_array_equal(restored.transform(views), dec.transform(views))
    again = clone(dec).fit(views)
    np.testing.assert_array_equal(again.transform(views), dec.transform(views))
    assert again.icr_ == dec.icr_


def test_pipeline_with_probe_and_cross_validation():
    rng = np.random.default_rng(1)
    n, v, d = 150, 3, 5
    labels = rng.integers(0, 2, size=n)
    invariant = rng.normal(size=(n, 1, d))
    invariant[:, 0, 0] += 3.0 * labels
    views = ViewArray((invariant + 0.5 * rng.normal(size=(n, v, d))).reshape(n, -1), v)
    pipe = Pipeline([("decompose", InvariantResidualDecomposer(n_components=2)),
                     ("probe", LogisticRegression())])
    accuracy = cross_val_score(pipe, views, labels, cv=3)
    assert accuracy.mean() > 0.85
    icr = cross_val_score(pipe, views, labels, cv=3, scoring=ICRScorer())
    assert np.all((icr < 0) & (icr > -1))


def test_grid_search_compares_shrinkage_without_labels(views):
    search = GridSearchCV(
        InvariantResidualDecomposer(),
        {"covariance_estimator": [None, LedoitWolf(), OAS()], "tau": [0.0, 1e-2]},
        scoring=ICRScorer(), cv=4,
    ).fit(views)
    scores = search.cv_results_["mean_test_score"]
    assert scores.shape == (6,) and np.all(np.isfinite(scores))
    assert search.best_score_ == scores.max()


def test_scorer_rejects_estimators_without_decomposer(views):
    with pytest.raises(TypeError, match="InvariantResidualDecomposer"):
        ICRScorer()(LogisticRegression(), views)


def test_scorer_runs_steps_before_the_decomposer(views):
    from sklearn.preprocessing import FunctionTransformer

    double = FunctionTransformer(lambda X: 2.0 * X)
    pipe = Pipeline([("scale", double), ("decompose", InvariantResidualDecomposer(tau=0.0))]).fit(views)
    assert ICRScorer()(pipe, views) == pytest.approx(-pipe[-1].icr_, rel=1e-10)


def test_interrupted_streaming_fit_resumes_from_a_pickle(views, tmp_path):
    """A run stopped half-way, saved and resumed equals an uninterrupted fit."""
    first = InvariantResidualDecomposer(covariance_estimator=LedoitWolf())
    first.partial_fit(views[:35])
    path = tmp_path / "half.pkl"
    path.write_bytes(pickle.dumps(first))
    resumed = pickle.loads(path.read_bytes())
    resumed.partial_fit(views[35:])
    full = InvariantResidualDecomposer(covariance_estimator=LedoitWolf()).fit(views)
    assert resumed.n_images_seen_ == 80
    np.testing.assert_allclose(resumed.covariance_xi_, full.covariance_xi_, rtol=1e-12)
    assert resumed.icr_ == pytest.approx(full.icr_, rel=1e-10)
