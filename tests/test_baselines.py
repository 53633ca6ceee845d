import numpy as np
import pytest
from scipy.linalg import eigh

from skicr.metrics import alignment, alpha_req, effective_rank, lidar, rankme, uniformity


def test_effective_rank_of_a_flat_spectrum_is_its_length():
    assert effective_rank(np.ones(7), eps=0.0) == pytest.approx(7.0)
    assert effective_rank([5.0, 0.0, 0.0], eps=0.0 + 1e-300) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="all zeros"):
        effective_rank(np.zeros(3))


def _peer_lidar(views, delta=1e-4, eps=1e-8):
    """LiDAR as stable-pretraining writes it: Sigma_b / (n - 1), Sigma_w / (n (q - 1))."""
    n, q, d = views.shape
    class_means = views.mean(axis=1)
    grand = class_means.mean(axis=0)
    sigma_b = (class_means - grand).T @ (class_means - grand) / (n - 1)
    diff = (views - class_means[:, None]).reshape(-1, d)
    sigma_w = diff.T @ diff / (n * (q - 1)) + delta * np.eye(d)
    lam = eigh(sigma_b, sigma_w, eigvals_only=True)
    p = lam / lam.sum() + eps
    return np.exp(-(p * np.log(p)).sum())


def test_lidar_matches_the_peer_formula():
    rng = np.random.default_rng(0)
    views = rng.normal(size=(50, 1, 8)) * np.geomspace(1, 0.05, 8) + 0.3 * rng.normal(size=(50, 5, 8))
    assert lidar(views) == pytest.approx(_peer_lidar(views), rel=1e-8)


def test_rankme_counts_equal_singular_directions():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(40, 3)))
    rows = q * 5.0  # 40 x 3, three equal singular values
    embedding = np.zeros((40, 10))
    embedding[:, :3] = rows
    views = embedding.reshape(20, 2, 10)
    assert rankme(views) == pytest.approx(3.0, rel=1e-4)


def test_rankme_of_wide_views_is_the_formula_on_the_wide_matrix():
    # flattened feature maps: more features than view rows (the transposed SVD path)
    rng = np.random.default_rng(3)
    views = rng.normal(size=(12, 3, 500)) * np.geomspace(1, 1e-3, 500)
    rows = views.reshape(-1, 500)
    s = np.linalg.svd(rows, compute_uv=False)
    p = s / s.sum() + 1e-7
    assert rankme(views) == pytest.approx(float(np.exp(-np.sum(p * np.log(p)))), rel=1e-12)


def test_alpha_req_recovers_a_power_law():
    rng = np.random.default_rng(2)
    d, alpha = 30, 1.5
    scales = np.arange(1, d + 1) ** (-alpha / 2)
    views = rng.normal(size=(4000, 2, d)) * scales
    assert alpha_req(views) == pytest.approx(alpha, rel=0.05)


def test_alignment_and_uniformity_known_values():
    z = np.array([[[1.0, 0.0], [1.0, 0.0]], [[-1.0, 0.0], [-1.0, 0.0]]])
    assert alignment(z) == 0.0
    # two antipodal points: ||z_i - z_j||^2 = 4
    assert uniformity(z) == pytest.approx(-8.0)
    tilted = np.array([[[1.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [0.0, -1.0]]])
    assert alignment(tilted) == pytest.approx(2.0)


def test_zero_norm_views_are_rejected():
    with pytest.raises(ValueError, match="zero norm"):
        alignment(np.zeros((3, 2, 4)))
