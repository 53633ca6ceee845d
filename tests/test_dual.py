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
