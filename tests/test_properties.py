"""Property tests: invariances of ICR and exactness of streaming statistics."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from skicr.metrics import GroupedViewStatistics, accumulate, icr_score

shapes = st.tuples(st.integers(8, 30), st.integers(2, 5), st.integers(1, 5))


def _views(seed, shape):
    rng = np.random.default_rng(seed)
    n, v, d = shape
    return rng.normal(size=(n, 1, d)) * rng.uniform(0.2, 3, size=d) + rng.normal(size=(n, v, d))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), shape=shapes)
def test_icr_invariant_to_invertible_maps_and_permutations(seed, shape):
    views = _views(seed, shape)
    n, v, d = shape
    rng = np.random.default_rng(seed + 1)
    reference = icr_score(views, tau=0.0)
    mixing = rng.normal(size=(d, d)) + 2 * d * np.eye(d)  # well conditioned, invertible
    assert np.isclose(icr_score(views @ mixing.T + rng.normal(size=d), tau=0.0), reference, rtol=1e-8)
    permuted = views[rng.permutation(n)][:, rng.permutation(v)]
    assert np.isclose(icr_score(permuted, tau=0.0), reference, rtol=1e-8)
    assert 0 < reference <= 1


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), shape=shapes, data=st.data())
def test_streaming_and_merging_equal_one_pass(seed, shape, data):
    views = _views(seed, shape) + 100.0
    n = shape[0]
    cuts = sorted(data.draw(st.lists(st.integers(1, n - 1), max_size=4, unique=True)))
    pieces = np.split(views, cuts)
    one = accumulate(views)
    streamed = GroupedViewStatistics()
    for piece in pieces:
        streamed.update(piece)
    merged = GroupedViewStatistics()
    for piece in reversed(pieces):
        merged.merge(GroupedViewStatistics().update(piece))
    for candidate in (streamed, merged):
        for name in ("covariance_means", "covariance_residual"):
            np.testing.assert_allclose(getattr(candidate, name)(), getattr(one, name)(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(candidate.centred_mean_moments()[1], one.centred_mean_moments()[1], rtol=1e-9)
