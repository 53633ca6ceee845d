import numpy as np
import pytest
from sklearn.covariance import (
    OAS,
    EmpiricalCovariance,
    GraphicalLasso,
    LedoitWolf,
    MinCovDet,
    ShrunkCovariance,
)

from skicr.metrics import (
    accumulate,
    estimate_covariances,
    ledoit_wolf_from_moments,
    oas_from_moments,
    project_psd,
    residual_contrast_rows,
)


@pytest.fixture(params=[(40, 4, 12), (15, 3, 30), (200, 2, 5)], ids=["n>d", "d>n", "tall"])
def views(request):
    n, v, d = request.param
    rng = np.random.default_rng(1)
    return 3.0 + rng.normal(size=(n, 1, d)) * np.linspace(0.5, 2, d) + rng.normal(size=(n, v, d))


def _rows(views):
    means = views.mean(axis=1)
    return means, residual_contrast_rows(views)


@pytest.mark.parametrize(
    "estimator", [EmpiricalCovariance(), ShrunkCovariance(shrinkage=0.3), LedoitWolf(), OAS()],
    ids=lambda e: type(e).__name__,
)
def test_streaming_shrinkage_equals_sklearn_on_the_same_rows(views, estimator):
    n = views.shape[0]
    means, residual_rows = _rows(views)
    cov_s, cov_xi, info = estimate_covariances(accumulate(views), estimator)
    # sklearn: the estimator itself on the contrast rows (centred) and on the means
    ref_xi = type(estimator)(**{**estimator.get_params(), "assume_centered": True}).fit(residual_rows)
    ref_m = type(estimator)(**estimator.get_params()).fit(means)
    np.testing.assert_allclose(cov_xi, ref_xi.covariance_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cov_s, ref_m.covariance_ * n / (n - 1), rtol=1e-10, atol=1e-12)
    if hasattr(ref_xi, "shrinkage_"):
        assert info["shrinkage_xi"] == pytest.approx(ref_xi.shrinkage_, rel=1e-10, abs=1e-13)
        assert info["shrinkage_s"] == pytest.approx(ref_m.shrinkage_, rel=1e-10, abs=1e-13)


def test_moment_formulas_match_sklearn_functions():
    from sklearn.covariance import ledoit_wolf, oas

    rng = np.random.default_rng(2)
    rows = rng.normal(size=(30, 8)) @ rng.normal(size=(8, 8))
    fourth = np.sum(np.sum(rows**2, axis=1) ** 2)
    lw_cov, lw_shrink = ledoit_wolf(rows, assume_centered=True)
    cov, shrink = ledoit_wolf_from_moments(rows.T @ rows, fourth, 30)
    np.testing.assert_allclose(cov, lw_cov, rtol=1e-12)
    assert shrink == pytest.approx(lw_shrink, rel=1e-12)
    oas_cov, oas_shrink = oas(rows, assume_centered=True)
    cov, shrink = oas_from_moments(rows.T @ rows, 30)
    np.testing.assert_allclose(cov, oas_cov, rtol=1e-12)


@pytest.mark.parametrize("estimator", [MinCovDet(random_state=0), GraphicalLasso(alpha=0.05)],
                         ids=lambda e: type(e).__name__)
def test_any_sklearn_estimator_is_fitted_on_contrast_rows(estimator):
    rng = np.random.default_rng(3)
    views = rng.normal(size=(80, 1, 4)) + 0.5 * rng.normal(size=(80, 3, 4))
    means, residual_rows = _rows(views)
    cov_s, cov_xi, _ = estimate_covariances(accumulate(views), estimator, views=views)
    ref_xi = type(estimator)(**{**estimator.get_params(), "assume_centered": True}).fit(residual_rows)
    np.testing.assert_allclose(cov_xi, ref_xi.covariance_, rtol=1e-8)
    assert cov_s.shape == (4, 4) and np.all(np.linalg.eigvalsh(cov_s) > 0)


def test_non_streaming_estimator_without_views_is_a_clear_error():
    rng = np.random.default_rng(3)
    views = rng.normal(size=(20, 3, 4))
    with pytest.raises(ValueError, match="needs the data itself"):
        estimate_covariances(accumulate(views), MinCovDet())


def test_estimator_without_covariance_attribute_is_rejected():
    class NoCovariance:
        def get_params(self, deep=True):
            return {}

        def set_params(self, **params):
            return self

        def fit(self, X):
            return self

    views = np.random.default_rng(0).normal(size=(20, 3, 4))
    with pytest.raises(TypeError, match="covariance_"):
        estimate_covariances(accumulate(views), NoCovariance(), views=views)


def test_bias_correction_subtracts_residual_over_views_and_stays_psd():
    rng = np.random.default_rng(4)
    views = rng.normal(size=(50, 4, 6))  # no invariant signal at all
    stats = accumulate(views)
    plug_in, cov_xi, _ = estimate_covariances(stats)
    corrected, _, _ = estimate_covariances(stats, bias_correction=True)
    np.testing.assert_allclose(corrected, project_psd(plug_in - cov_xi / 4), atol=1e-14)
    assert np.linalg.eigvalsh(corrected).min() >= -1e-12
    assert np.trace(corrected) < np.trace(plug_in)


def test_project_psd_clips_negative_eigenvalues():
    matrix = np.diag([2.0, -1.0, 0.5])
    np.testing.assert_allclose(project_psd(matrix), np.diag([2.0, 0.0, 0.5]), atol=1e-15)
