"""Test helpers: synthetic grouped views with known covariances; the one "same fit" check.

Imported as ``from _synthetic import ...``: pytest puts this folder on
``sys.path`` (rootdir-independent, works under ``pytest`` and
``python -m pytest`` alike).
"""

import numpy as np
from scipy.linalg import eigh

#: what a fitted decomposer is, for "streamed == merged == one-pass == loader" checks
FITTED = ["covariance_s_", "covariance_xi_", "eigenvalues_", "mean_", "icr_"]


def assert_same_fit(actual, expected, rtol=1e-12, names=FITTED):
    """Two fitted decomposers agree: the one check of every streamed / merged / one-pass /
    loader / distributed fit against its reference (absolute tolerance scaled by the values)."""
    for name in names:
        want = np.asarray(getattr(expected, name))
        np.testing.assert_allclose(
            getattr(actual, name), want, rtol=rtol, atol=rtol * np.abs(want).max(), err_msg=name
        )


def assert_same_statistics(actual, expected, rtol=1e-12):
    """Two GroupedViewStatistics agree on the moments every fit uses."""
    assert actual.n_images == expected.n_images and actual.n_views == expected.n_views
    np.testing.assert_allclose(actual.covariance_means(), expected.covariance_means(), rtol=rtol)
    np.testing.assert_allclose(actual.covariance_residual(), expected.covariance_residual(), rtol=rtol)
    np.testing.assert_allclose(actual.centred_mean_moments()[1], expected.centred_mean_moments()[1],
                               rtol=rtol)


def random_spd(rng, d, scale=1.0, condition=10.0):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    eigenvalues = scale * np.geomspace(1.0, 1.0 / condition, d)
    return (q * eigenvalues) @ q.T


def make_views(rng, n_images, n_views, cov_s, cov_xi, shift=0.0):
    """h_iv = s_i + xi_iv with s ~ N(shift, cov_s), xi ~ N(0, cov_xi)."""
    d = cov_s.shape[0]
    s = rng.multivariate_normal(np.full(d, shift), cov_s, size=n_images)
    xi = rng.multivariate_normal(np.zeros(d), cov_xi, size=(n_images, n_views))
    return s[:, None, :] + xi


def exact_icr(cov_s, cov_xi):
    eigenvalues = eigh(cov_s, cov_xi, eigvals_only=True)
    return 1.0 / (1.0 + eigenvalues.mean())
