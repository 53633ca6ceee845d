"""The one-pass blocked update (issue 15, fit at the GEMM floor) against the exact paths.

The blocked route must give the statistics of the scaled two-pass route and of
the explicit two-pass formulas to 1e-12, fall back to the scaled route (leaving
nothing half-added) for views that need a scale, and skip the fourth moments
only when asked.
"""

import numpy as np
import pytest
from scipy import linalg
from sklearn.covariance import OAS, LedoitWolf

import skicr.metrics._statistics as statistics_module
from skicr import InvariantResidualDecomposer
from skicr.metrics import GroupedViewStatistics, accumulate, data_scale, needs_fourth_moments

ARRAYS = ("mean_sum", "mean_scatter", "mean_cubic", "residual_scatter", "shift")
SCALARS = ("mean_fourth", "residual_fourth", "n_images", "scale")


def _views(n_images=53, n_views=4, d=7, seed=0, offset=30.0):
    rng = np.random.default_rng(seed)
    # a common offset: naive power sums about zero would lose digits here
    return offset + rng.normal(size=(n_images, 1, d)) + 0.3 * rng.normal(size=(n_images, n_views, d))


def _scaled_route(views, monkeypatch, stats=None):
    with monkeypatch.context() as patch:
        patch.setattr(GroupedViewStatistics, "_update_in_blocks", lambda self, views: False)
        return (stats or GroupedViewStatistics()).update(views)


def _assert_same(a, b, rtol=1e-12):
    for name in ARRAYS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=1e-12, err_msg=name)
    for name in SCALARS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, err_msg=name)


@pytest.fixture
def small_blocks(monkeypatch):
    # several blocks per batch and several batches, the last of each partial
    monkeypatch.setattr(statistics_module, "_BLOCK_BYTES", 8 * 4 * 7 * 3)
    monkeypatch.setattr(statistics_module, "_BATCH_BYTES", 8 * 4 * 7 * 3 * 4)


@pytest.mark.parametrize("n_views", [2, 3, 4, 6])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_blocked_update_equals_scaled_route(n_views, dtype, small_blocks, monkeypatch):
    views = _views(n_views=n_views).astype(dtype)
    blocked = GroupedViewStatistics().update(views)
    _assert_same(blocked, _scaled_route(views, monkeypatch))
    # and the residual scatter is the explicit one, symmetric
    centred = views.astype(np.float64) - views.astype(np.float64).mean(axis=1, keepdims=True)
    explicit = np.einsum("ivj,ivk->jk", centred, centred)
    np.testing.assert_allclose(blocked.residual_scatter, explicit, rtol=1e-12, atol=1e-12)
    assert np.array_equal(blocked.residual_scatter, blocked.residual_scatter.T)


def test_blocked_chunks_and_merges_equal_one_update(small_blocks):
    views = _views(n_images=40)
    one = GroupedViewStatistics().update(views)
    streamed = GroupedViewStatistics()
    for start in (0, 3, 17, 30):
        streamed.update(views[start:start + {0: 3, 3: 14, 17: 13, 30: 10}[start]])
    _assert_same(streamed, one)
    merged = GroupedViewStatistics().update(views[:11]).merge(GroupedViewStatistics().update(views[11:]))
    for name in ("covariance_means", "covariance_residual"):
        np.testing.assert_allclose(getattr(merged, name)(), getattr(one, name)(), rtol=1e-12)


def test_one_view_per_image(small_blocks, monkeypatch):
    views = _views(n_views=1)
    blocked = GroupedViewStatistics().update(views)
    _assert_same(blocked, _scaled_route(views, monkeypatch))
    assert not blocked.residual_scatter.any()


@pytest.mark.parametrize("extreme", [1e250, 1e-250])
def test_views_needing_a_scale_take_the_scaled_route_whole(extreme, small_blocks, monkeypatch):
    views = _views(offset=0.0)
    views[-2:] *= extreme  # only the last block is out of the unscaled range
    stats = GroupedViewStatistics().update(views)
    reference = _scaled_route(views, monkeypatch)
    _assert_same(stats, reference)
    assert stats.n_images == views.shape[0]  # nothing added twice
    assert (stats.scale != 1.0) == (extreme > 1.0)  # tiny rows beside unit ones: scale 1


def test_non_finite_views_change_nothing(small_blocks):
    views = _views()
    stats = GroupedViewStatistics().update(views[:10])
    before = stats.copy()
    bad = views[10:].copy()
    bad[-1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        stats.update(bad)
    _assert_same(stats, before)


@pytest.mark.parametrize("top", [0.0, 2.0**-202, 2.0**-201, 2.0**-200.5, 2.0**-200, 1.0,
                                 np.nextafter(2.0**200, 0), 2.0**200, 2.0**201])
def test_unscaled_range_is_the_scale_one_rule(top):
    low, high = statistics_module._UNSCALED_RANGE
    unscaled = top == 0.0 or low <= top < high
    assert unscaled == (statistics_module._working_scale(data_scale(np.array([top]))) == 1.0)


def test_without_fourth_moments(monkeypatch):
    views = _views()
    full = GroupedViewStatistics().update(views)
    lean = GroupedViewStatistics(fourth_moments=False).update(views)
    for name in ("mean_sum", "mean_scatter", "residual_scatter", "shift"):
        np.testing.assert_array_equal(getattr(lean, name), getattr(full, name))
    assert np.isnan(lean.residual_fourth) and np.isnan(lean.mean_fourth) and np.isnan(lean.mean_cubic).all()
    lean_scaled = _scaled_route(views, monkeypatch, GroupedViewStatistics(fourth_moments=False))
    assert np.isnan(lean_scaled.residual_fourth)
    np.testing.assert_allclose(lean_scaled.residual_scatter, full.residual_scatter, rtol=1e-12)
    # merging keeps "not accumulated"; so do the state dict and a centring shift
    merged = full.copy().merge(GroupedViewStatistics(fourth_moments=False).update(views))
    assert not merged.fourth_moments and np.isnan(merged.residual_fourth)
    restored = GroupedViewStatistics.from_state_dict(lean.state_dict())
    assert not restored.fourth_moments
    np.testing.assert_allclose(lean.covariance_means(), full.covariance_means(), rtol=1e-12)
    # OAS needs no fourth moment; Ledoit-Wolf says clearly what is missing
    fitted = InvariantResidualDecomposer(covariance_estimator=OAS()).fit_statistics(lean)
    reference = InvariantResidualDecomposer(covariance_estimator=OAS()).fit(views)
    np.testing.assert_allclose(fitted.eigenvalues_, reference.eigenvalues_, rtol=1e-10)
    with pytest.raises(ValueError, match="without fourth moments"):
        InvariantResidualDecomposer(covariance_estimator=LedoitWolf()).fit_statistics(lean)
    assert needs_fourth_moments(LedoitWolf()) and not needs_fourth_moments(None)


def _exact_two_pass(views, tau=1e-3):
    n, v, d = views.shape
    means = views.mean(axis=1)
    centred = means - means.mean(axis=0)
    residual = (views - means[:, None, :]).reshape(-1, d)
    cov_s = centred.T @ centred / (n - 1)
    cov_xi = residual.T @ residual / (n * (v - 1))
    ridge = tau * np.trace(cov_xi) / d
    return linalg.eigh(cov_s, cov_xi + ridge * np.eye(d), eigvals_only=True)[::-1]


@pytest.mark.parametrize("estimator", [None, LedoitWolf()])
def test_decomposer_fit_agrees_with_the_exact_path(estimator, small_blocks):
    views = _views(n_images=120, n_views=4, d=9, offset=5.0)
    fitted = InvariantResidualDecomposer(covariance_estimator=estimator).fit(views)
    if estimator is None:
        eigenvalues = _exact_two_pass(views)
        assert np.max(np.abs(fitted.eigenvalues_ - eigenvalues)) <= 1e-12 * eigenvalues.max()
        assert abs(fitted.icr_ / (1.0 / (1.0 + eigenvalues.mean())) - 1.0) <= 1e-12
    assert fitted._stats.fourth_moments == (estimator is not None)
    # the same fit through the scaled route
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GroupedViewStatistics, "_update_in_blocks", lambda self, views: False)
        scaled = InvariantResidualDecomposer(covariance_estimator=estimator).fit(views)
    np.testing.assert_allclose(fitted.eigenvalues_, scaled.eigenvalues_, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fitted.icr_, scaled.icr_, rtol=1e-13)


def test_accumulate_equals_update():
    views = _views()
    _assert_same(accumulate(views), GroupedViewStatistics().update(views))


def test_lidar_of_wide_features_takes_the_dual_form_with_the_primal_value(monkeypatch):
    from skicr.metrics import _baselines, lidar

    rng = np.random.default_rng(3)
    views = rng.normal(size=(12, 1, 40)) + 0.5 * rng.normal(size=(12, 3, 40))  # d = 40 > 24 rows
    scaled, scale = _baselines._scaled_views(views, None)
    primal = _baselines._lidar_of_statistics(accumulate(scaled), scale, 1e-4, 1e-8)
    calls = []
    monkeypatch.setattr(_baselines, "accumulate", lambda *a, **k: calls.append(a) or accumulate(*a, **k))
    dual = lidar(views)
    assert not calls  # no d x d statistics
    np.testing.assert_allclose(dual, primal, rtol=1e-8)
    np.testing.assert_allclose(lidar(views * 1e6, delta=1e8), primal, rtol=1e-8)  # scale-free


@pytest.mark.parametrize("n_views", [1, 2, 4])
def test_any_number_of_threads_gives_the_same_bits(n_views, small_blocks, monkeypatch):
    # the batches (the threads' units of work) depend on the data's shape only and
    # their sums are added in batch order: 1, 2 or 5 threads give identical statistics
    views = _views(n_images=61, n_views=n_views, seed=4)
    results = []
    for workers in (1, 2, 5):
        monkeypatch.setattr(statistics_module, "statistics_workers", lambda d, rows, w=workers: w)
        stats = GroupedViewStatistics().update(views)
        fitted = InvariantResidualDecomposer().fit(views) if n_views > 1 else None
        results.append((stats, None if fitted is None else fitted.eigenvalues_))
    first, eigenvalues = results[0]
    for stats, values in results[1:]:
        for name in ARRAYS:
            np.testing.assert_array_equal(getattr(stats, name), getattr(first, name), err_msg=name)
        for name in SCALARS:
            assert getattr(stats, name) == getattr(first, name) or np.isnan(getattr(first, name))
        if n_views > 1:
            np.testing.assert_array_equal(values, eigenvalues)
    assert first.n_images == 61


def test_threads_fall_back_whole_when_a_later_batch_is_not_finite(small_blocks, monkeypatch):
    monkeypatch.setattr(statistics_module, "statistics_workers", lambda d, rows: 2)
    views = _views(n_images=40)
    views[-1, 0, 0] = np.nan
    stats = GroupedViewStatistics()
    assert stats._update_in_blocks(views) is False
    assert stats.n_images == 0 and stats.scale is None
