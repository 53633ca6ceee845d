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
    principal_contrast_rows,
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
    n, n_views, _ = views.shape
    means, residual_rows = _rows(views)
    cov_s, cov_xi, info = estimate_covariances(accumulate(views), estimator)
    # sklearn: the estimator itself on the contrast rows (centred) and on the means
    ref_xi = type(estimator)(**{**estimator.get_params(), "assume_centered": True}).fit(residual_rows)
    ref_m = type(estimator)(**estimator.get_params()).fit(means)
    np.testing.assert_allclose(cov_s, ref_m.covariance_ * n / (n - 1), rtol=1e-10, atol=1e-12)
    if hasattr(ref_m, "shrinkage_"):
        assert info["shrinkage_s"] == pytest.approx(ref_m.shrinkage_, rel=1e-10, abs=1e-13)
    if type(estimator) is LedoitWolf and n_views > 2:
        # sklearn's fourth-moment term over contrast rows depends on their basis;
        # skicr's is per image (test_ledoit_wolf_residual_shrinkage_is_per_image)
        return
    np.testing.assert_allclose(cov_xi, ref_xi.covariance_, rtol=1e-10, atol=1e-12)
    if hasattr(ref_xi, "shrinkage_"):
        assert info["shrinkage_xi"] == pytest.approx(ref_xi.shrinkage_, rel=1e-10, abs=1e-13)


def _per_image_ledoit_wolf(views):
    """Ledoit-Wolf of Sigma_xi written from the definition: one scatter C_i per image."""
    n, n_views, d = views.shape
    residuals = views - views.mean(axis=1, keepdims=True)
    scatters = np.einsum("ivj,ivk->ijk", residuals, residuals)  # C_i, E C_i = (V - 1) Sigma
    n_rows, group = n * (n_views - 1), n_views - 1
    emp = scatters.sum(axis=0) / n_rows
    mu = np.trace(emp) / d
    # variance of S from the spread of the C_i around (V - 1) S
    spread = np.sum((scatters - group * emp) ** 2) / n_rows**2
    beta = spread / d
    delta = np.sum((emp - mu * np.eye(d)) ** 2) / d
    shrinkage = min(beta, delta) / delta
    return (1 - shrinkage) * emp + shrinkage * mu * np.eye(d), shrinkage


def test_ledoit_wolf_residual_shrinkage_is_per_image(views):
    cov_s, cov_xi, info = estimate_covariances(accumulate(views), LedoitWolf())
    reference, shrinkage = _per_image_ledoit_wolf(views)
    assert info["shrinkage_xi"] == pytest.approx(shrinkage, rel=1e-10)
    np.testing.assert_allclose(cov_xi, reference, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n_views", [3, 4, 6])
def test_ledoit_wolf_shrinkage_does_not_depend_on_view_order(n_views):
    rng = np.random.default_rng(11)
    views = rng.normal(size=(25, 1, 7)) + rng.standard_t(3, size=(25, n_views, 7))
    _, _, info = estimate_covariances(accumulate(views), LedoitWolf())
    # sklearn on the Helmert rows changes with the order of the views; skicr does not
    rows = lambda v: residual_contrast_rows(v)  # noqa: E731
    sklearn_values, skicr_values = [], []
    for _ in range(5):
        permuted = np.stack([image[rng.permutation(n_views)] for image in views])
        sklearn_values.append(LedoitWolf(assume_centered=True).fit(rows(permuted)).shrinkage_)
        skicr_values.append(estimate_covariances(accumulate(permuted), LedoitWolf())[2]["shrinkage_xi"])
    np.testing.assert_allclose(skicr_values, info["shrinkage_xi"], rtol=1e-12)
    assert np.ptp(sklearn_values) > 1e-6  # the basis dependence this replaces


def test_ledoit_wolf_with_two_views_is_sklearns_on_the_differences():
    # V = 2: one contrast (h1 - h2) / sqrt(2) per image, unique up to sign
    rng = np.random.default_rng(12)
    views = rng.normal(size=(60, 1, 9)) + rng.normal(size=(60, 2, 9)) * np.linspace(0.2, 3, 9)
    _, cov_xi, info = estimate_covariances(accumulate(views), LedoitWolf())
    differences = (views[:, 0] - views[:, 1]) / np.sqrt(2)
    reference = LedoitWolf(assume_centered=True).fit(differences)
    assert info["shrinkage_xi"] == pytest.approx(reference.shrinkage_, rel=1e-12)
    np.testing.assert_allclose(cov_xi, reference.covariance_, rtol=1e-12)


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
    cov_s, cov_xi, _ = estimate_covariances(accumulate(views), estimator, views=views)
    # fitted on each image's principal contrasts (so the view order cannot matter)
    residual_rows = principal_contrast_rows(views)
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
