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
