"""Synthetic grouped views with known invariant and residual covariances."""

import numpy as np
from scipy.linalg import eigh


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
