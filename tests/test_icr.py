import warnings

import numpy as np
import pytest
from scipy.linalg import eigh
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from skicr.metrics import (
    SingularResidualWarning,
    accumulate,
    alignment,
    decompose,
    generalized_spectrum,
    heldout_eigenvalues,
    icr_from_eigenvalues,
    icr_score,
    mean_invariant_snr,
    resolve_tau,
)
from _synthetic import exact_icr, make_views, random_spd


def test_estimate_matches_known_population_icr():
    """N=4000, V=8, d=32: the bias-corrected estimate is within 1% of the truth."""
    rng = np.random.default_rng(0)
    d = 32
    cov_s = random_spd(rng, d, scale=1.0, condition=20.0)
    cov_xi = random_spd(rng, d, scale=2.0, condition=5.0)
    truth = exact_icr(cov_s, cov_xi)
    views = make_views(rng, 4000, 8, cov_s, cov_xi, shift=1.0)
    corrected = icr_score(views, tau=0.0, bias_correction=True)
    assert corrected == pytest.approx(truth, rel=0.01)
    # the plug-in estimate is biased towards cleaner: Sigma_s + Sigma_xi / V
    plug_in = icr_score(views, tau=0.0)
    assert plug_in == pytest.approx(exact_icr(cov_s + cov_xi / 8, cov_xi), rel=0.01)
    assert plug_in < truth


def test_trace_identity_equals_mean_eigenvalue():
    rng = np.random.default_rng(1)
    cov_s = random_spd(rng, 40)
    cov_xi = random_spd(rng, 40, condition=100.0)
    for tau in (0.0, 0.1):
        eigenvalues, _ = generalized_spectrum(cov_s, cov_xi, tau)
        assert mean_invariant_snr(cov_s, cov_xi, tau) == pytest.approx(eigenvalues.mean(), rel=1e-10)


def test_spectrum_is_sorted_and_directions_are_normalised():
    rng = np.random.default_rng(2)
    cov_s, cov_xi = random_spd(rng, 10), random_spd(rng, 10)
    eigenvalues, directions = generalized_spectrum(cov_s, cov_xi, 0.5)
    assert np.all(np.diff(eigenvalues) <= 0)
    b = cov_xi + 0.5 * np.eye(10)
    np.testing.assert_allclose(directions @ b @ directions.T, np.eye(10), atol=1e-10)
    np.testing.assert_allclose(directions @ cov_s @ directions.T, np.diag(eigenvalues), atol=1e-10)
    # held-out eigenvalues on the same covariances reproduce the spectrum exactly
    np.testing.assert_allclose(heldout_eigenvalues(directions, cov_s, cov_xi, 0.5), eigenvalues, rtol=1e-10)


def test_invariant_under_invertible_linear_maps():
    rng = np.random.default_rng(3)
    views = rng.normal(size=(100, 1, 6)) + rng.normal(size=(100, 4, 6)) * 0.7
    mixing = rng.normal(size=(6, 6)) + 3 * np.eye(6)
    mapped = views @ mixing.T + rng.normal(size=6)
    assert icr_score(mapped, tau=0.0) == pytest.approx(icr_score(views, tau=0.0), rel=1e-8)
    # alignment is not: scaling the features changes it, ICR does not
    scaled = views * np.linspace(0.1, 10, 6)
    assert icr_score(scaled, tau=0.0) == pytest.approx(icr_score(views, tau=0.0), rel=1e-8)
    assert abs(alignment(scaled) - alignment(views)) > 1e-3


def test_spectrum_equals_lda_with_images_as_classes():
    rng = np.random.default_rng(4)
    n, v, d = 30, 4, 5
    views = rng.normal(size=(n, 1, d)) + 0.8 * rng.normal(size=(n, v, d))
    rows = views.reshape(-1, d)
    labels = np.repeat(np.arange(n), v)
    lda = LinearDiscriminantAnalysis(solver="eigen").fit(rows, labels)
    # LDA: Sw = scatter / (N V) (priors times biased class covariances), Sb = St - Sw;
    # ours: Sigma_xi = scatter / (N (V - 1)), Sigma_s = cov(m) with N - 1 dof
    total = np.cov(rows, rowvar=False, bias=True)
    lda_eigenvalues = eigh(total - lda.covariance_, lda.covariance_, eigvals_only=True)[::-1]
    result = decompose(accumulate(views), tau=0.0)
    constant = n * (v - 1) / ((n - 1) * v)
    np.testing.assert_allclose(result.eigenvalues, lda_eigenvalues * constant, rtol=1e-8)
    np.testing.assert_allclose(
        result.eigenvalues[: d] / result.eigenvalues.sum(), lda.explained_variance_ratio_, rtol=1e-8,
    )
    # same Fisher directions up to sign and scale
    for ours, theirs in zip(result.directions, lda.scalings_.T):
        cosine = ours @ theirs / np.linalg.norm(ours) / np.linalg.norm(theirs)
        assert abs(cosine) == pytest.approx(1.0, abs=1e-6)


def test_relative_and_absolute_tau():
    cov_xi = np.diag([1.0, 3.0])
    assert resolve_tau(cov_xi, 0.1, "relative") == pytest.approx(0.2)
    assert resolve_tau(cov_xi, 0.1, "absolute") == pytest.approx(0.1)
    with pytest.raises(ValueError, match="tau_mode"):
        resolve_tau(cov_xi, 0.1, "bogus")
    with pytest.raises(ValueError, match="tau"):
        resolve_tau(cov_xi, -1.0)


def test_larger_tau_means_larger_icr():
    rng = np.random.default_rng(5)
    views = rng.normal(size=(50, 1, 8)) + rng.normal(size=(50, 3, 8))
    values = [icr_score(views, tau=t) for t in (0.0, 0.01, 0.1, 1.0, 10.0)]
    assert np.all(np.diff(values) > 0)


def test_icr_of_identical_views_is_near_zero_and_of_pure_noise_near_one():
    rng = np.random.default_rng(6)
    s = rng.normal(size=(40, 1, 4))
    with pytest.warns(SingularResidualWarning):
        clean = icr_score(np.repeat(s, 3, axis=1), tau=0.0)
    assert 0 < clean < 1e-6
    noise = icr_score(rng.normal(size=(3000, 4, 4)), tau=0.0, bias_correction=True)
    assert noise > 0.95


def test_singular_residual_gives_finite_icr_and_a_warning():
    rng = np.random.default_rng(7)
    views = rng.normal(size=(5, 2, 20))  # d = 20 > N (V - 1) = 5
    with pytest.warns(SingularResidualWarning, match="singular"):
        value = icr_score(views, tau=0.0)
    assert np.isfinite(value) and 0 < value <= 1
    constant = rng.normal(size=(30, 3, 4))
    constant[:, :, 2] = 7.0  # a constant feature
    with pytest.warns(SingularResidualWarning):
        value = icr_score(constant, tau=0.0)
    assert np.isfinite(value)
    with pytest.warns(SingularResidualWarning):
        result = decompose(accumulate(constant), tau=0.0)
    assert np.all(np.isfinite(result.eigenvalues))
    # with a ridge no warning is needed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(icr_score(constant, tau=1e-3))


def test_all_constant_features_is_an_error():
    with pytest.raises(ValueError, match="constant"):
        icr_score(np.ones((10, 3, 4)), tau=0.0)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((10, 3, 4), np.nan), "NaN"),
        (np.full((10, 3, 4), np.inf), "infinite"),
        (np.zeros((10, 1, 4)), "At least 2 views"),
        (np.zeros((1, 3, 4)), "At least 2 images"),
        (np.zeros((10, 4)), "Cannot tell how many views"),
        (np.zeros((10,)), "3-D"),
    ],
)
def test_bad_views_have_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        icr_score(bad)


def test_flattened_views_need_divisible_features():
    with pytest.raises(ValueError, match="n_features=8, which is not divisible by n_views=3"):
        icr_score(np.zeros((10, 8)), n_views=3)
    rng = np.random.default_rng(8)
    views = rng.normal(size=(10, 3, 4))
    assert icr_score(views.reshape(10, 12), n_views=3) == icr_score(views)


def test_icr_from_eigenvalues():
    assert icr_from_eigenvalues([1.0, 3.0]) == pytest.approx(1 / 3)
    assert icr_from_eigenvalues([0.0]) == 1.0
