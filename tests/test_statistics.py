import numpy as np
import pytest

from skicr.metrics import GroupedViewStatistics, accumulate, residual_contrast_rows


@pytest.fixture
def views():
    rng = np.random.default_rng(0)
    # a large common offset makes naive power sums lose precision
    return 50.0 + rng.normal(size=(37, 5, 6)) + rng.normal(size=(37, 1, 6))


def reference_covariances(views):
    means = views.mean(axis=1)
    centred = means - means.mean(axis=0)
    residual = (views - means[:, None, :]).reshape(-1, views.shape[2])
    n, v, _ = views.shape
    return centred.T @ centred / (n - 1), residual.T @ residual / (n * (v - 1))


def test_covariances_match_direct_formulas(views):
    stats = GroupedViewStatistics().update(views)
    cov_m, cov_xi = reference_covariances(views)
    np.testing.assert_allclose(stats.covariance_means(), cov_m, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(stats.covariance_residual(), cov_xi, rtol=1e-12, atol=1e-14)
    assert stats.n_residual_rows == 37 * 4


def test_contrast_rows_carry_residual_scatter(views):
    rows = residual_contrast_rows(views)
    assert rows.shape == (37 * 4, 6)
    residual = (views - views.mean(axis=1, keepdims=True)).reshape(-1, 6)
    np.testing.assert_allclose(rows.T @ rows, residual.T @ residual, rtol=1e-12)


@pytest.mark.parametrize("chunks", [[37], [1, 36], [10, 10, 17], [5] * 7 + [2]])
def test_any_chunking_gives_the_one_pass_result(views, chunks):
    one = GroupedViewStatistics().update(views)
    streamed = GroupedViewStatistics()
    start = 0
    for size in chunks:
        streamed.update(views[start:start + size])
        start += size
    for name in ("covariance_means", "covariance_residual"):
        np.testing.assert_allclose(getattr(streamed, name)(), getattr(one, name)(), rtol=1e-12)
    s_one, f_one = one.centred_mean_moments()
    s_str, f_str = streamed.centred_mean_moments()
    np.testing.assert_allclose(f_str, f_one, rtol=1e-12)
    np.testing.assert_allclose(streamed.residual_fourth, one.residual_fourth, rtol=1e-12)


def test_merge_of_halves_equals_one_pass(views):
    one = GroupedViewStatistics().update(views)
    left = GroupedViewStatistics().update(views[:20])
    right = GroupedViewStatistics().update(views[20:] - 0.0)
    merged = left.merge(right)
    np.testing.assert_allclose(merged.covariance_means(), one.covariance_means(), rtol=1e-12)
    np.testing.assert_allclose(merged.covariance_residual(), one.covariance_residual(), rtol=1e-12)
    np.testing.assert_allclose(merged.centred_mean_moments()[1], one.centred_mean_moments()[1], rtol=1e-12)
    np.testing.assert_allclose(merged.mean, views.mean(axis=(0, 1)), rtol=1e-13)
    # merging into an empty accumulator copies
    empty = GroupedViewStatistics().merge(one)
    np.testing.assert_array_equal(empty.covariance_means(), one.covariance_means())


def test_fourth_moment_of_centred_means(views):
    stats = accumulate(views)
    means = views.mean(axis=1)
    centred = means - means.mean(axis=0)
    _, fourth = stats.centred_mean_moments()
    np.testing.assert_allclose(fourth, np.sum(np.sum(centred**2, axis=1) ** 2), rtol=1e-10)


def test_state_dict_round_trip(views):
    stats = accumulate(views[:10])
    restored = GroupedViewStatistics.from_state_dict(stats.state_dict())
    restored.update(views[10:])
    np.testing.assert_allclose(restored.covariance_means(), accumulate(views).covariance_means(), rtol=1e-12)


def test_incompatible_chunks_are_rejected(views):
    stats = GroupedViewStatistics().update(views)
    with pytest.raises(ValueError, match="features"):
        stats.update(views[:, :, :3])
    with pytest.raises(ValueError, match="views"):
        stats.update(views[:, :3])
    with pytest.raises(ValueError, match="n_views"):
        stats.merge(GroupedViewStatistics().update(views[:, :2]))
    with pytest.raises(ValueError, match="At least 2 images"):
        GroupedViewStatistics().update(views[:1]).covariance_means()


def test_statistics_too_wide_for_memory_is_a_clear_error(monkeypatch):
    from skicr.metrics import _statistics

    monkeypatch.setattr(_statistics, "_physical_memory", lambda: 2**30)  # a 1 GiB machine
    GroupedViewStatistics(n_features=4096)  # 256 MiB: fine
    with pytest.raises(MemoryError, match="8192 features per view.*method='dual'"):
        GroupedViewStatistics(n_features=8192)  # 1 GiB of statistics
    views = np.zeros((3, 2, 8192), dtype=np.float32)
    with pytest.raises(MemoryError, match="dual"):
        GroupedViewStatistics().update(views)
