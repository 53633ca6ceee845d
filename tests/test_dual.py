import numpy as np
import pytest
from sklearn.covariance import OAS, LedoitWolf, MinCovDet, ShrunkCovariance

from skicr.metrics import SingularResidualWarning, dual_mean_invariant_snr, icr_score


@pytest.mark.parametrize("shape", [(30, 4, 20), (10, 3, 50), (6, 2, 200)], ids=["d<rows", "d>rows", "d>>rows"])
@pytest.mark.parametrize("estimator", [None, ShrunkCovariance(), LedoitWolf(), OAS()], ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("tau", [1e-2, 1.0])
def test_dual_equals_primal(shape, estimator, tau):
    rng = np.random.default_rng(0)
    views = rng.normal(size=(shape[0], 1, shape[2])) * np.linspace(0.2, 2, shape[2]) + rng.normal(size=shape)
    primal = icr_score(views, tau=tau, covariance_estimator=estimator, method="primal")
    dual = icr_score(views, tau=tau, covariance_estimator=estimator, method="dual")
    assert dual == pytest.approx(primal, rel=1e-8)
    assert icr_score(views, tau=tau, covariance_estimator=estimator) == pytest.approx(primal, rel=1e-8)


def test_dual_with_singular_residual_warns_and_stays_finite():
    views = np.random.default_rng(1).normal(size=(5, 2, 40))
    with pytest.warns(SingularResidualWarning):
        value = icr_score(views, tau=0.0, method="dual")
    assert np.isfinite(value) and 0 < value <= 1


def test_dual_refuses_what_it_cannot_compute():
    views = np.random.default_rng(2).normal(size=(10, 3, 50))
    with pytest.raises(ValueError, match="dual form"):
        icr_score(views, bias_correction=True, method="dual")
    with pytest.raises(ValueError, match="dual"):
        dual_mean_invariant_snr(views, covariance_estimator=MinCovDet())
    with pytest.raises(ValueError, match="method"):
        icr_score(views, method="gram")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gram_blocks_in_chunks_equal_the_direct_products(dtype):
    from skicr.metrics._dual import gram_blocks
    from skicr.metrics._statistics import residual_contrast_rows

    views = np.random.default_rng(3).normal(size=(7, 3, 301)).astype(dtype)
    rows = residual_contrast_rows(views.astype(np.float64))
    means = views.mean(axis=1, dtype=np.float64)
    means -= means.mean(axis=0)
    expected = (rows @ rows.T, rows @ means.T, means @ means.T)
    # 64-column chunks (the smallest), with a ragged last chunk, and one chunk
    for chunk_bytes in (1, 10**9):
        gram_r, cross, gram_m = blocks = gram_blocks(views, chunk_bytes=chunk_bytes)
        for got, want in zip(blocks, expected):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
        np.testing.assert_array_equal(gram_r, gram_r.T)
        np.testing.assert_array_equal(gram_m, gram_m.T)


def _primal(views, estimator=None):
    """The primal (d x d) decomposition of the functional core, whatever d."""
    from skicr.metrics._icr import accumulate, decompose

    return decompose(accumulate(views), covariance_estimator=estimator)


def _wide_views(rng, shape):
    return rng.normal(size=(shape[0], 1, shape[2])) * np.linspace(0.2, 2, shape[2]) + rng.normal(size=shape)


@pytest.mark.parametrize("shape", [(30, 4, 20), (10, 3, 50), (6, 2, 200)], ids=["d<rows", "d>rows", "d>>rows"])
@pytest.mark.parametrize("estimator", [None, ShrunkCovariance(), LedoitWolf(), OAS()], ids=lambda e: type(e).__name__)
def test_dual_decomposition_equals_the_primal_spectrum(shape, estimator):
    from skicr.metrics._dual import dual_decompose

    views = _wide_views(np.random.default_rng(0), shape)
    primal = _primal(views, estimator)
    dual = dual_decompose(views, covariance_estimator=estimator, chunk_bytes=1)
    assert dual.eigenvalues.shape == (shape[2],)
    np.testing.assert_allclose(dual.eigenvalues, primal.eigenvalues, rtol=0, atol=1e-9 * primal.eigenvalues[0])
    assert dual.icr == pytest.approx(primal.icr, rel=1e-10)
    assert dual.tau == pytest.approx(primal.tau, rel=1e-12)
    assert dual.shrinkage_s == pytest.approx(primal.shrinkage_s, abs=1e-12)
    assert dual.trace_xi == pytest.approx(np.trace(primal.covariance_xi), rel=1e-12)
    np.testing.assert_allclose(dual.mean, views.mean(axis=(0, 1)), atol=1e-12)
    # directions: B-normalised eigenvectors of the primal problem
    directions = dual.directions(5)
    b = primal.covariance_xi + primal.tau * np.eye(shape[2])
    np.testing.assert_allclose(np.einsum("ij,jk,ik->i", directions, b, directions), 1.0, atol=1e-9)
    np.testing.assert_allclose(directions @ primal.covariance_s, dual.span_eigenvalues[:5, None] * (directions @ b),
                               atol=1e-8 * dual.span_eigenvalues[0])


def test_dual_heldout_icr_is_the_primal_one_when_the_rows_span_every_direction():
    from skicr import InvariantResidualDecomposer
    from skicr.metrics._dual import dual_decompose, dual_heldout_icr

    rng = np.random.default_rng(1)
    train, test = _wide_views(rng, (30, 4, 20)), _wide_views(rng, (25, 4, 20))
    for estimator in (None, LedoitWolf()):
        primal = InvariantResidualDecomposer(covariance_estimator=estimator).fit(train)
        dual = dual_decompose(train, covariance_estimator=estimator)
        assert dual_heldout_icr(dual, test, chunk_bytes=1) == pytest.approx(-primal.score(test), rel=1e-10)


@pytest.mark.parametrize("estimator", [None, OAS()], ids=lambda e: type(e).__name__)
def test_dual_heldout_icr_follows_its_definition_with_explicit_d_by_d_matrices(estimator):
    """Each eigenspace of the training problem scored as one block (ratio of traces)."""
    from scipy import linalg as sla

    from skicr.metrics import eigenspace_groups
    from skicr.metrics._dual import dual_decompose, dual_heldout_icr

    rng = np.random.default_rng(2)
    d = 60
    train, test = _wide_views(rng, (8, 3, d)), _wide_views(rng, (9, 3, d))
    fitted = _primal(train, estimator)
    b = fitted.covariance_xi + fitted.tau * np.eye(d)
    values, vectors = sla.eigh(fitted.covariance_s, b)  # all d directions, B-orthonormal
    values, vectors = values[::-1], vectors[:, ::-1]
    held = _primal(test)  # plain covariances of the held-out views
    b_held = held.covariance_xi + held.tau * np.eye(d)
    total = 0.0
    groups = eigenspace_groups(values)
    for start, stop in groups:
        w = vectors[:, start:stop]
        total += (stop - start) * np.trace(w.T @ held.covariance_s @ w) / np.trace(w.T @ b_held @ w)
    expected = 1.0 / (1.0 + total / d)
    dual = dual_decompose(train, covariance_estimator=estimator)
    assert dual.rank < d
    # the wide case really has a degenerate eigenspace of dimension >= d - rank
    assert max(stop - start for start, stop in groups) >= d - dual.rank
    assert dual_heldout_icr(dual, test, chunk_bytes=1) == pytest.approx(expected, rel=1e-8)


def test_dual_heldout_icr_does_not_depend_on_the_basis_of_a_degenerate_eigenspace():
    from skicr.metrics._dual import dual_decompose, dual_heldout_icr

    rng = np.random.default_rng(3)
    train, test = _wide_views(rng, (8, 3, 60)), _wide_views(rng, (9, 3, 60))
    dual = dual_decompose(train)
    zero = dual.span_eigenvalues <= 1e-8 * dual.span_eigenvalues[0]
    assert zero.sum() >= 2
    rotated = dual.span_vectors.copy()
    mix, _ = np.linalg.qr(rng.normal(size=(zero.sum(), zero.sum())))
    rotated[:, zero] = rotated[:, zero] @ mix  # another B-orthonormal basis of that eigenspace
    before = dual_heldout_icr(dual, test)
    dual.span_vectors = rotated
    assert dual_heldout_icr(dual, test) == pytest.approx(before, rel=1e-12)


def test_decomposer_takes_the_dual_form_when_d_exceeds_the_residual_rows():
    from skicr import ICRScorer, InvariantResidualDecomposer
    from skicr.metrics._icr import accumulate, decompose

    rng = np.random.default_rng(4)
    views = _wide_views(rng, (12, 3, 40))  # 24 residual rows < 40 features
    held = _wide_views(rng, (10, 3, 40))
    dec = InvariantResidualDecomposer(n_components=4, covariance_estimator=LedoitWolf()).fit(views)
    assert dec.solver_ == "dual" and dec.covariance_s_ is None
    primal = decompose(accumulate(views), covariance_estimator=LedoitWolf())
    np.testing.assert_allclose(dec.eigenvalues_, primal.eigenvalues, atol=1e-9 * primal.eigenvalues[0])
    assert dec.icr_ == pytest.approx(primal.icr, rel=1e-10)
    assert dec.trace_s_ == pytest.approx(np.trace(primal.covariance_s), rel=1e-12)
    # top directions agree with the primal ones up to sign (simple eigenvalues)
    signs = np.sign(np.sum(dec.components_ * primal.directions[:4], axis=1))
    np.testing.assert_allclose(dec.components_ * signs[:, None], primal.directions[:4], atol=1e-7)
    assert dec.transform(held).shape == (10, 4)
    score = ICRScorer()(dec, held)
    assert -1 < score < 0 and np.isfinite(score)
    with pytest.raises(ValueError, match="dual form"):
        dec.partial_fit(held)
    # narrow data stays primal; bias correction needs the d x d matrix
    assert InvariantResidualDecomposer().fit(views[:, :, :20]).solver_ == "primal"
    assert InvariantResidualDecomposer(bias_correction=True).fit(views).solver_ == "primal"


def test_decomposer_dual_in_sample_score_is_the_in_sample_icr():
    from skicr import InvariantResidualDecomposer

    views = _wide_views(np.random.default_rng(5), (10, 2, 64))
    dec = InvariantResidualDecomposer().fit(views)
    assert dec.solver_ == "dual"
    assert -dec.score(views) == pytest.approx(dec.icr_, rel=1e-9)


# ------------------------------------------------ one normalisation for the dual form (issue 14)
@pytest.mark.parametrize("factor", [1e-300, 1e-160, 1e153, 1e300])
@pytest.mark.parametrize("estimator", [None, "lw"])
def test_dual_decomposition_is_exact_at_any_magnitude(factor, estimator):
    from sklearn.covariance import LedoitWolf

    from skicr.metrics import dual_decompose

    estimator = LedoitWolf() if estimator == "lw" else None
    rng = np.random.default_rng(3)
    views = rng.normal(size=(8, 1, 60)) + 0.5 * rng.normal(size=(8, 3, 60))
    reference = dual_decompose(views, covariance_estimator=estimator)
    scaled = dual_decompose(views * factor, covariance_estimator=estimator)
    assert scaled.icr == pytest.approx(reference.icr, rel=1e-10)
    np.testing.assert_allclose(scaled.eigenvalues, reference.eigenvalues, rtol=1e-8, atol=1e-12 * reference.eigenvalues[0])
    assert scaled.invariant_share == pytest.approx(reference.invariant_share, rel=1e-10)
    # directions in the features' own units: w^T (factor x) is the same number
    np.testing.assert_allclose(np.abs(scaled.directions(2) * factor), np.abs(reference.directions(2)),
                               rtol=1e-7, atol=1e-9)
    assert icr_score(views * factor, method="dual", covariance_estimator=estimator) == pytest.approx(reference.icr, rel=1e-10)


def test_dual_decomposer_warns_where_its_traces_leave_float64_and_stays_exact():
    from skicr import InvariantResidualDecomposer
    from skicr.metrics import FeatureScaleWarning

    rng = np.random.default_rng(4)
    views = rng.normal(size=(8, 1, 60)) + 0.5 * rng.normal(size=(8, 3, 60))
    reference = InvariantResidualDecomposer().fit(views)
    for factor, word in ((1e300, "beyond"), (1e-300, "near")):
        with pytest.warns(FeatureScaleWarning, match=word):
            fitted = InvariantResidualDecomposer().fit(views * factor)
        assert fitted.solver_ == "dual"
        assert fitted.icr_ == pytest.approx(reference.icr_, rel=1e-10)
        assert fitted.invariant_share_ == pytest.approx(reference.invariant_share_, rel=1e-10)
        assert fitted.score(views * factor) == pytest.approx(reference.score(views), rel=1e-8)
        # held-out views in other units: the relative-ridge score is scale-free
        assert fitted.score(views) == pytest.approx(reference.score(views), rel=1e-8)
        # the same projections up to each direction's sign (eigh picks it)
        np.testing.assert_allclose(np.abs(fitted.transform(views * factor)), np.abs(reference.transform(views)),
                                   rtol=1e-7, atol=1e-9)


def test_dual_absolute_ridge_is_in_the_features_units():
    from skicr.metrics import dual_decompose

    rng = np.random.default_rng(5)
    views = rng.normal(size=(6, 1, 40)) + 0.5 * rng.normal(size=(6, 3, 40))
    reference = dual_decompose(views, tau=0.1, tau_mode="absolute")
    scaled = dual_decompose(views * 1e100, tau=0.1 * 1e200, tau_mode="absolute")
    assert scaled.icr == pytest.approx(reference.icr, rel=1e-10)
    assert scaled.tau == pytest.approx(0.1 * 1e200, rel=1e-12)
    assert icr_score(views * 1e100, tau=1e199, tau_mode="absolute", method="dual") == pytest.approx(
        icr_score(views, tau=0.1, tau_mode="absolute", method="primal"), rel=1e-8)


def test_primal_invariant_share_is_exact_where_the_traces_underflow():
    import warnings

    from skicr import InvariantResidualDecomposer

    rng = np.random.default_rng(6)
    views = rng.normal(size=(50, 1, 5)) + 0.5 * rng.normal(size=(50, 3, 5))
    reference = InvariantResidualDecomposer().fit(views)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiny = InvariantResidualDecomposer().fit(views * 1e-300)
    assert tiny.trace_s_ == 0.0  # underflows in the features' units
    assert tiny.invariant_share_ == pytest.approx(reference.invariant_share_, rel=1e-12)


def test_transform_that_overflows_is_a_clear_error():
    from skicr import InvariantResidualDecomposer

    rng = np.random.default_rng(7)
    views = rng.normal(size=(8, 1, 60)) + 0.5 * rng.normal(size=(8, 3, 60))
    fitted = InvariantResidualDecomposer(n_components=2).fit(views * 1e-30)
    with pytest.raises(ValueError, match="overflow float64"):
        fitted.transform(views * 1e300)
