"""The held-out ICR scores a degenerate training eigenspace as one block, in the primal as in the dual.

With fewer training images than features (or any repeated eigenvalue) the
Fisher directions inside an eigenspace are an arbitrary basis; the held-out
score must not depend on it (ratio of traces per eigenspace), must equal the
direction-by-direction value on a simple spectrum, and the primal and dual
forms must agree where both apply.
"""

import numpy as np
import pytest
from sklearn.covariance import OAS

from skicr import InvariantResidualDecomposer
from skicr.metrics import (
    accumulate,
    decompose,
    dual_decompose,
    dual_heldout_icr,
    eigenspace_groups,
    eigenspace_snr,
    heldout_eigenvalues,
    heldout_icr,
    heldout_icr_from_statistics,
    heldout_spectrum,
)
from skicr.model_selection._decision import fold_criteria


def _views(rng, n_images, n_views, d):
    return rng.normal(size=(n_images, 1, d)) * np.linspace(0.2, 2, d) + rng.normal(size=(n_images, n_views, d))


def _rotated_inside(fit, rng):
    """The fit's directions with the largest eigenspace given another normalised basis."""
    start, stop = max(eigenspace_groups(fit.eigenvalues), key=lambda g: g[1] - g[0])
    mix, _ = np.linalg.qr(rng.normal(size=(stop - start, stop - start)))
    rotated = fit.directions.copy()
    rotated[start:stop] = mix.T @ fit.directions[start:stop]
    return rotated, stop - start


def test_rotation_inside_the_null_eigenspace_leaves_the_heldout_icr_unchanged():
    rng = np.random.default_rng(0)
    d = 16
    train, test = _views(rng, 6, 4, d), _views(rng, 30, 4, d)  # 6 training images < 16 features
    fit = decompose(accumulate(train))
    rotated, dim = _rotated_inside(fit, rng)
    assert dim >= d - 6 + 1  # Sigma_s has rank <= 5: the eigenvalue 0 is degenerate
    # the rotated rows are Fisher directions too: B-orthonormal, same eigenvalues
    b = fit.covariance_xi + fit.tau * np.eye(d)
    np.testing.assert_allclose(rotated @ b @ rotated.T, fit.directions @ b @ fit.directions.T, atol=1e-9)
    np.testing.assert_allclose(rotated @ fit.covariance_s, fit.eigenvalues[:, None] * (rotated @ b),
                               atol=1e-9 * fit.eigenvalues[0])
    # direction by direction the value depends on the basis (what this fixes) ...
    assert abs(heldout_icr(rotated, test) - heldout_icr(fit.directions, test)) > 1e-4
    # ... with the training eigenvalues it does not
    expected = heldout_icr(fit.directions, test, eigenvalues=fit.eigenvalues)
    assert heldout_icr(rotated, test, eigenvalues=fit.eigenvalues) == pytest.approx(expected, rel=1e-12)
    stats = accumulate(test)
    assert heldout_icr_from_statistics(rotated, stats, eigenvalues=fit.eigenvalues) == pytest.approx(
        expected, rel=1e-12)
    for correction in (False, True):
        spectrum = [heldout_spectrum(w, test, eigenvalues=fit.eigenvalues, bias_correction=correction)
                    for w in (fit.directions, rotated)]
        np.testing.assert_allclose(spectrum[1], spectrum[0], rtol=1e-11, atol=1e-14)


def test_the_block_value_is_the_ratio_of_traces_against_explicit_matrices():
    rng = np.random.default_rng(1)
    d = 10
    train, test = _views(rng, 5, 3, d), _views(rng, 20, 3, d)
    fit = decompose(accumulate(train), tau=0.1)
    held = decompose(accumulate(test), tau=0.1)
    a, b = held.covariance_s, held.covariance_xi + held.tau * np.eye(d)
    total = 0.0
    for start, stop in eigenspace_groups(fit.eigenvalues):
        w = fit.directions[start:stop].T
        total += (stop - start) * np.trace(w.T @ a @ w) / np.trace(w.T @ b @ w)
    expected = 1.0 / (1.0 + total / d)
    assert heldout_icr(fit.directions, test, eigenvalues=fit.eigenvalues, tau=0.1) == pytest.approx(
        expected, rel=1e-10)
    # the decomposer's score is that value, whatever BLAS picked inside the eigenspace
    dec = InvariantResidualDecomposer(tau=0.1).fit(train)
    assert dec.solver_ == "primal"
    assert -dec.score(test) == pytest.approx(expected, rel=1e-10)
    assert -dec.score_statistics(accumulate(test)) == pytest.approx(expected, rel=1e-10)


def test_on_a_simple_spectrum_nothing_changes():
    rng = np.random.default_rng(2)
    d = 8
    train, test = _views(rng, 300, 4, d), _views(rng, 100, 4, d)
    fit = decompose(accumulate(train))
    assert len(eigenspace_groups(fit.eigenvalues)) == d
    held = decompose(accumulate(test))
    a, b = held.covariance_s, held.covariance_xi + held.tau * np.eye(d)
    quotients = [w @ a @ w / (w @ b @ w) for w in fit.directions]  # the old definition
    old = 1.0 / (1.0 + np.mean(quotients))
    for eigenvalues in (None, fit.eigenvalues):
        assert heldout_icr(fit.directions, test, eigenvalues=eigenvalues) == pytest.approx(old, rel=1e-12)
    assert heldout_icr(fit.directions, test, eigenvalues=fit.eigenvalues) == pytest.approx(
        heldout_icr(fit.directions, test), rel=1e-12)
    assert -InvariantResidualDecomposer().fit(train).score(test) == pytest.approx(old, rel=1e-12)
    # on the training data with all directions: the in-sample ICR
    assert heldout_icr(fit.directions, train, eigenvalues=fit.eigenvalues) == pytest.approx(fit.icr, rel=1e-10)


@pytest.mark.parametrize("shape", [(8, 4, 16), (8, 3, 30)], ids=["N<=d<=rows", "d>rows"])
@pytest.mark.parametrize("estimator", [None, OAS()], ids=["plain", "OAS"])
def test_primal_and_dual_agree_on_wide_data(shape, estimator):
    rng = np.random.default_rng(3)
    train, test = _views(rng, *shape), _views(rng, 11, shape[1], shape[2])
    primal = decompose(accumulate(train), covariance_estimator=estimator)
    assert max(b - a for a, b in eigenspace_groups(primal.eigenvalues)) > 1  # a degenerate eigenspace
    dual = dual_decompose(train, covariance_estimator=estimator)
    expected = dual_heldout_icr(dual, test, chunk_bytes=1)
    assert heldout_icr(primal.directions, test, eigenvalues=primal.eigenvalues) == pytest.approx(
        expected, rel=1e-8)
    dec = InvariantResidualDecomposer(covariance_estimator=estimator).fit(train)
    assert -dec.score(test) == pytest.approx(expected, rel=1e-8)  # primal or dual, as it chose


def test_fold_criteria_do_not_depend_on_the_basis_of_the_null_eigenspace():
    rng = np.random.default_rng(4)
    d = 20
    train, test = _views(rng, 7, 3, d), _views(rng, 9, 3, d)
    fit = decompose(accumulate(train))
    rotated, _ = _rotated_inside(fit, rng)
    values = [fold_criteria(test, train, w, common_width=16, eigenvalues=fit.eigenvalues)
              for w in (fit.directions, rotated)]
    for name in ("icr_top", "icr_pca", "invariant_dims"):
        assert values[1][name] == pytest.approx(values[0][name], rel=1e-10), name
    # without the eigenvalues fold_criteria fits its own directions (and eigenvalues)
    assert fold_criteria(test, train, common_width=16)["icr_top"] == pytest.approx(
        values[0]["icr_top"], rel=1e-10)


def test_eigenspace_snr_and_its_errors():
    # a group pools its entries' traces; no residual at all is perfectly invariant
    np.testing.assert_allclose(eigenspace_snr([3.0, 1.0, 1.0], [2.0, 1.0, 3.0], [1.0, 2.0, 2.0]), [2.0, 1.0, 1.0])
    assert eigenspace_snr([1.0], [1.0], [0.0])[0] == pytest.approx(1e10)
    assert eigenspace_snr([1.0], [0.0], [0.0])[0] == 0.0
    rng = np.random.default_rng(5)
    views = _views(rng, 10, 3, 4)
    fit = decompose(accumulate(views))
    with pytest.raises(ValueError, match="descending"):
        heldout_icr(fit.directions, views, eigenvalues=fit.eigenvalues[::-1])
    with pytest.raises(ValueError, match="one per direction"):
        heldout_icr(fit.directions, views, eigenvalues=fit.eigenvalues[:2])
    with pytest.raises(ValueError, match="finite"):
        heldout_eigenvalues(fit.directions, fit.covariance_s, fit.covariance_xi,
                            eigenvalues=np.full(4, np.nan))
