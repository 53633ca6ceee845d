"""Fuzz suite: any input either gives a finite value in its documented range or a clear error.

Hypothesis draws shapes, dtypes, magnitudes from 1e-300 to 1e300, NaN/inf,
empty and ragged input, and malformed arguments, and calls ``icr_score``, the
decomposer (fit / transform / score, the primal and the dual form), the
baselines and ``FeatureExtractor``'s input checking (images and noise levels).
Each call must
return a finite value in its documented range or raise ``ValueError`` /
``TypeError`` (``InvalidParameterError`` is both) with a message, within a
time bound per example; ``pytest-timeout`` turns a hang into a failure
instead of a stalled run. Then the invariances ICR must have: image order,
view order (every estimator, Ledoit-Wolf included, on the primal and the dual
path) and overall scale.
"""

import signal
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from sklearn.covariance import OAS, EmpiricalCovariance, GraphicalLasso, LedoitWolf, ShrunkCovariance

from skicr import FeatureExtractor, InvariantResidualDecomposer
from skicr.metrics import alignment, alpha_req, dual_decompose, icr_score, lidar, rankme, uniformity

# a single call on these tiny inputs takes milliseconds; seconds mean a hang
SECONDS_PER_CALL = 5.0
FUZZ = settings(
    max_examples=150,
    deadline=None,  # the time bound is enforced per call below, robust to a loaded machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples on every run: CI failures reproduce
    # no shrinking: shrinking a hang re-runs it many times; the failing
    # example is reported as found
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
# backstop for a hang inside compiled code, where the per-call alarm cannot
# interrupt: the thread method ends the process instead of stalling the run
pytestmark = pytest.mark.timeout(180, method="thread")


class CallTimeout(Exception):
    """A single call ran past SECONDS_PER_CALL."""


def _on_alarm(signum, frame):
    raise CallTimeout(f"a call ran past {SECONDS_PER_CALL} s")

ESTIMATORS = [
    None,
    EmpiricalCovariance(),
    ShrunkCovariance(shrinkage=0.3),
    LedoitWolf(),
    OAS(),
]


# ----------------------------------------------------------------- strategies
@st.composite
def magnitudes(draw):
    """A factor anywhere from 1e-300 to 1e300 (sign included), or exactly 1."""
    if draw(st.integers(0, 3)) == 0:
        return 1.0
    exponent = draw(st.floats(-300, 300))
    sign = draw(st.sampled_from([1.0, -1.0]))
    return sign * 10.0**exponent


@st.composite
def grouped_views(draw, min_images=0, max_images=10, min_views=1, max_views=5, max_features=8,
                  specials=True, dtypes=True):
    """Arrays of any shape near the grouped-view one, any dtype and magnitude, maybe NaN/inf."""
    n = draw(st.integers(min_images, max_images))
    v = draw(st.integers(min_views, max_views))
    d = draw(st.integers(0 if specials else 1, max_features))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["signal", "noise", "constant", "low_rank", "offset"]))
    if kind == "signal":
        values = rng.normal(size=(n, 1, d)) + draw(st.floats(0.01, 3)) * rng.normal(size=(n, v, d))
    elif kind == "noise":
        values = rng.standard_t(2, size=(n, v, d))
    elif kind == "constant":
        values = np.full((n, v, d), draw(st.sampled_from([0.0, 1.0, -2.5, 7.0])))
    elif kind == "low_rank":
        values = rng.normal(size=(n, v, 1)) * rng.normal(size=(1, 1, d))
    else:
        values = 1e6 + rng.normal(size=(n, v, d))
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        values = values * draw(magnitudes())
        if specials and values.size and draw(st.integers(0, 9)) == 0:
            flat = values.reshape(-1)
            flat[rng.integers(flat.size)] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e308]))
        if dtypes:
            values = values.astype(draw(st.sampled_from([np.float64] * 5 + [np.float32, np.float16, np.int64])))
    return values


def malformed_inputs():
    """Inputs that are not grouped views at all."""
    return st.one_of(
        st.just([[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0]]]),  # ragged
        st.just([[1.0, 2.0], [3.0]]),
        st.just([]),
        st.just(np.zeros((0, 3, 4))),
        st.just(np.zeros((5,))),
        st.just(np.zeros((4, 3, 2, 2))),
        st.just(np.array(["a", "b"], dtype=object)),
        st.just(np.ones((6, 3, 2), dtype=complex)),
        st.just("not an array"),
        st.just(3.0),
        st.just(None),
    )


# ------------------------------------------------------------------ contract
def _call(function, *args, **kwargs):
    """Run ``function``: its value, or None after a clear ValueError / TypeError."""
    start = time.perf_counter()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, SECONDS_PER_CALL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = function(*args, **kwargs)
    except (ValueError, TypeError) as error:
        assert str(error).strip(), f"{type(error).__name__} without a message"
        value = None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.perf_counter() - start
    assert elapsed < SECONDS_PER_CALL, f"{function.__name__} took {elapsed:.1f} s"
    return value


def _check_icr(value):
    if value is not None:
        assert np.isfinite(value) and 0.0 < value <= 1.0, value


@FUZZ
@given(views=grouped_views(), estimator=st.sampled_from(ESTIMATORS),
       tau=st.sampled_from([0.0, 1e-3, 1.0]), tau_mode=st.sampled_from(["relative", "absolute"]),
       bias_correction=st.booleans(), method=st.sampled_from(["auto", "primal", "dual"]))
def test_icr_score_is_in_range_or_a_clear_error(views, estimator, tau, tau_mode, bias_correction, method):
    _check_icr(_call(
        icr_score, views, tau=tau, tau_mode=tau_mode, covariance_estimator=estimator,
        bias_correction=bias_correction, method=method,
    ))


@FUZZ
@given(bad=malformed_inputs(), n_views=st.sampled_from([None, 1, 2, 3, 0, -1, 2.5, "2"]))
def test_malformed_input_is_a_clear_error(bad, n_views):
    for function in (icr_score, lidar, rankme, alignment):
        assert _call(function, bad, n_views=n_views) is None
    assert _call(InvariantResidualDecomposer(n_views=n_views if n_views != "2" else 2).fit, bad) is None


@FUZZ
@given(bad_argument=st.sampled_from([
    {"tau": -1.0}, {"tau": np.nan}, {"tau": np.inf}, {"tau": "1"}, {"tau_mode": "relativ"},
    {"bias_correction": "no"}, {"bias_correction": 1.5}, {"method": "fast"},
    {"covariance_estimator": ShrunkCovariance(shrinkage=2.0)},
    {"covariance_estimator": ShrunkCovariance(shrinkage=-1.0)},
    {"covariance_estimator": "LedoitWolf"}, {"n_views": 1},
]))
def test_invalid_arguments_are_rejected(bad_argument):
    views = np.random.default_rng(0).normal(size=(12, 3, 4))
    assert _call(icr_score, views, **bad_argument) is None
    if "method" not in bad_argument:  # an icr_score argument only
        assert _call(InvariantResidualDecomposer(**bad_argument).fit, views) is None


@settings(FUZZ, max_examples=100)
@given(train=grouped_views(), test=grouped_views(), estimator=st.sampled_from(ESTIMATORS),
       n_components=st.sampled_from([None, 1, 3]), bias_correction=st.booleans())
def test_decomposer_fit_transform_score(train, test, estimator, n_components, bias_correction):
    decomposer = InvariantResidualDecomposer(
        covariance_estimator=estimator, n_components=n_components, bias_correction=bias_correction,
    )
    if _call(decomposer.fit, train) is None:
        return
    _check_icr(decomposer.icr_)
    assert np.all(np.isfinite(decomposer.eigenvalues_)) and np.all(decomposer.eigenvalues_ >= 0)
    assert np.all(np.isfinite(decomposer.components_))
    assert 0.0 <= decomposer.invariant_share_ <= 1.0
    for data in (train, test):
        projected = _call(decomposer.transform, data)
        if projected is not None:
            assert projected.shape == (data.shape[0], decomposer.n_components_)
            assert np.all(np.isfinite(projected))
        score = _call(decomposer.score, data)
        if score is not None:
            assert np.isfinite(score) and -1.0 <= score < 0.0, score


@FUZZ
@given(views=grouped_views())
def test_baselines_are_finite_in_range_or_a_clear_error(views):
    d = views.shape[2] if views.ndim == 3 else 1
    n_rows = views.shape[0] * views.shape[1]
    for function, low, high in (
        (lidar, 1.0 - 1e-6, d + 1e-6),
        (rankme, 1.0 - 1e-6, min(n_rows, d) + 1e-6),
        (alpha_req, -np.inf, np.inf),
        (alignment, 0.0, 4.0 + 1e-9),
        (uniformity, -8.0 - 1e-9, 1e-12),
    ):
        value = _call(function, views)
        if value is not None:
            assert np.isfinite(value) and low <= value <= high, (function.__name__, value)


# ---------------------------------------------------------------- properties
@st.composite
def clean_views(draw):
    """Well-formed float64 views (primal and dual shapes) at any magnitude."""
    n = draw(st.integers(3, 12))
    v = draw(st.integers(2, 5))
    d = draw(st.integers(1, 3 * n * v // 2))  # includes d > n v: the dual form
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    views = rng.normal(size=(n, 1, d)) + draw(st.floats(0.05, 3)) * rng.standard_t(4, size=(n, v, d))
    exponent = draw(st.integers(-290, 290))
    return views * 10.0**exponent


def _icr_quiet(views, **kwargs):
    value = _call(icr_score, views, **kwargs)
    assert value is not None, "well-formed views must have an ICR"
    return value


ALL_ESTIMATORS = ESTIMATORS + [GraphicalLasso(alpha=0.5, max_iter=50)]


@FUZZ
@given(views=clean_views(), seed=st.integers(0, 2**32 - 1))
def test_icr_is_in_range_and_invariant_to_image_order(views, seed):
    value = _icr_quiet(views)
    _check_icr(value)
    permuted = views[np.random.default_rng(seed).permutation(views.shape[0])]
    assert _icr_quiet(permuted) == pytest.approx(value, rel=1e-9)


@settings(FUZZ, max_examples=100)
@given(views=clean_views(), seed=st.integers(0, 2**32 - 1), estimator=st.sampled_from(ALL_ESTIMATORS))
def test_icr_is_invariant_to_view_order_for_every_estimator(views, seed, estimator):
    if estimator is not None and type(estimator) is GraphicalLasso:
        assume(views.shape[2] <= 6)  # keep the row-fitted estimator cheap
    rng = np.random.default_rng(seed)
    permuted = np.stack([image[rng.permutation(views.shape[1])] for image in views])
    value = _call(icr_score, views, covariance_estimator=estimator)
    if value is None:
        assert type(estimator) is GraphicalLasso  # e.g. not converging: not the property here
        return
    assert _icr_quiet(permuted, covariance_estimator=estimator) == pytest.approx(value, rel=1e-7)
    if views.shape[2] > views.shape[0] * views.shape[1] and estimator is None or type(estimator) in (
        LedoitWolf, OAS, ShrunkCovariance,
    ):
        # the dual form agrees with itself under permutation, and with the primal form
        dual = _icr_quiet(permuted, covariance_estimator=estimator, method="dual")
        assert dual == pytest.approx(value, rel=1e-6)


@FUZZ
@given(views=clean_views(), exponent=st.floats(-290, 290), estimator=st.sampled_from(ESTIMATORS))
def test_icr_is_invariant_to_overall_scale(views, exponent, estimator):
    value = _icr_quiet(views, covariance_estimator=estimator)
    with np.errstate(over="ignore", under="ignore"):
        scaled = views * 10.0**exponent
    assume(np.isfinite(scaled).all() and np.all(np.abs(scaled)[views != 0] > 0))
    assert _icr_quiet(scaled, covariance_estimator=estimator) == pytest.approx(value, rel=1e-7)


@pytest.mark.parametrize("constant", [0.0, 1.0, 0.1, -3.7, 1e300, 1e-300])
@pytest.mark.parametrize("shape", [(10, 3, 4), (3, 3, 40)], ids=["primal", "dual"])
def test_constant_data_is_one_clear_error_whatever_the_constant(constant, shape):
    views = np.full(shape, constant)
    with pytest.raises(ValueError, match="constant"):
        icr_score(views)
    with pytest.raises(ValueError, match="constant"):
        InvariantResidualDecomposer().fit(views[:, :, :4])


# -------------------------------------------------------- the dual (Gram) form
STREAMING = [None, EmpiricalCovariance(), ShrunkCovariance(shrinkage=0.3), LedoitWolf(), OAS()]


@st.composite
def wide_views(draw):
    """Well-formed views wider than their residual rows (the decomposer's dual form)."""
    n = draw(st.integers(2, 8))
    v = draw(st.integers(2, 4))
    d = draw(st.integers(n * (v - 1) + 1, 4 * n * v))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["signal", "low_rank", "offset"]))
    if kind == "signal":
        views = rng.normal(size=(n, 1, d)) + draw(st.floats(0.05, 3)) * rng.standard_t(4, size=(n, v, d))
    elif kind == "low_rank":
        views = rng.normal(size=(n, v, 1)) * rng.normal(size=(1, 1, d)) + 0.01 * rng.normal(size=(n, v, d))
    else:
        views = 1e6 + rng.normal(size=(n, v, d))
    return views


@settings(FUZZ, max_examples=60)
@given(views=wide_views(), test=wide_views(), train_exponent=st.integers(-300, 300),
       test_exponent=st.integers(-300, 300), estimator=st.sampled_from(STREAMING),
       tau_mode=st.sampled_from(["relative", "absolute"]))
def test_dual_form_at_extreme_magnitudes(views, test, train_exponent, test_exponent, estimator, tau_mode):
    """method="dual" and the dual decomposer: no NaN, no ZeroDivisionError, the scale-free answer."""
    with np.errstate(over="ignore", under="ignore"):
        scaled = views * 10.0**train_exponent
    assume(np.isfinite(scaled).all() and np.all(scaled[views != 0] != 0))
    # the reference at unit scale; an absolute ridge is scaled with the data (ICR is invariant then)
    tau = 1e-3
    assume(tau_mode == "relative" or abs(train_exponent) < 150)  # tau * 10**(2 e) representable
    scaled_tau = tau * 10.0 ** (2 * train_exponent) if tau_mode == "absolute" else tau
    reference = _icr_quiet(views, covariance_estimator=estimator, tau=tau, tau_mode=tau_mode, method="dual")
    value = _icr_quiet(scaled, covariance_estimator=estimator, tau=scaled_tau, tau_mode=tau_mode, method="dual")
    _check_icr(value)
    assert value == pytest.approx(reference, rel=1e-6)
    result = _call(dual_decompose, scaled, tau=scaled_tau, tau_mode=tau_mode, covariance_estimator=estimator)
    assert result is not None
    assert result.icr == pytest.approx(reference, rel=1e-6)
    assert np.all(np.isfinite(result.eigenvalues)) and np.all(result.eigenvalues >= 0)
    decomposer = InvariantResidualDecomposer(covariance_estimator=estimator, tau=scaled_tau, tau_mode=tau_mode,
                                             n_components=3)
    assert _call(decomposer.fit, scaled) is not None
    assert decomposer.solver_ == "dual"
    assert decomposer.icr_ == pytest.approx(reference, rel=1e-6)
    assert 0.0 <= decomposer.invariant_share_ <= 1.0
    assert np.all(np.isfinite(decomposer.components_))
    with np.errstate(over="ignore", under="ignore"):
        test = test[:, : views.shape[1], : views.shape[2]] * 10.0**test_exponent
    if test.shape[1:] != views.shape[1:] or not np.isfinite(test).all():
        test = scaled[::-1] * 2.0**-30  # the same layout, in other units
    for data in (scaled, test):
        projected = _call(decomposer.transform, data)
        assert projected is not None or data is test  # far larger than the training views: refused
        assert projected is None or np.all(np.isfinite(projected))
        score = _call(decomposer.score, data)
        assert score is not None
        assert np.isfinite(score) and -1.0 <= score < 0.0, score
    # the held-out score is scale-free in the held-out views too (relative ridge)
    if tau_mode == "relative":
        assert _call(decomposer.score, scaled * 2.0**-40) == pytest.approx(decomposer.score(scaled), rel=1e-6)


@pytest.mark.parametrize("constant", [0.0, 1.0, -3.7, 1e300, 1e-300])
def test_constant_data_in_the_dual_decomposer_is_one_clear_error(constant):
    with pytest.raises(ValueError, match="constant"):
        InvariantResidualDecomposer().fit(np.full((3, 3, 40), constant))


# ------------------------------------------------- FeatureExtractor input checks
@pytest.fixture(scope="module")
def tiny_net():
    from skicr.extraction._testing import tiny_unet2d

    return tiny_unet2d()  # 3 channels, 16 x 16


@st.composite
def image_inputs(draw):
    """Arrays near the image layouts: any shape, dtype, magnitude, maybe NaN/inf or empty."""
    ndim = draw(st.sampled_from([0, 1, 2, 3, 4, 4, 4, 4, 5]))
    shape = []
    for axis in range(ndim):
        if ndim == 4 and axis == 1:
            shape.append(draw(st.sampled_from([3, 3, 3, 1, 4])))
        elif ndim == 4 and axis >= 2:
            shape.append(draw(st.sampled_from([16, 16, 8, 1, 2])))
        else:
            shape.append(draw(st.integers(0, 4)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.random(shape)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        if draw(st.integers(0, 2)) == 0:  # often out of range: any magnitude, any sign
            values = values * draw(magnitudes())
        if values.size and draw(st.integers(0, 5)) == 0:
            values.reshape(-1)[rng.integers(values.size)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        dtype = draw(st.sampled_from([np.float32] * 4 + [np.float64, np.float16, np.uint8, np.int64, bool,
                                                          complex, object]))
        if dtype is np.uint8:
            values = (np.nan_to_num(values) * 255).clip(0, 255)
        values = values.astype(dtype)
    if draw(st.integers(0, 3)) == 0:
        import torch

        if values.dtype.kind in "fiub" and values.dtype != np.float16:
            values = torch.from_numpy(np.ascontiguousarray(values))
    return values


def malformed_images():
    """Image inputs that are not arrays of images at all."""
    return st.one_of(
        st.just([[[[0.5] * 16] * 16] * 3, [[[0.5] * 16] * 16] * 2]),  # ragged
        st.just([[0.1, 0.2], [0.3]]),
        st.just([]),
        st.just("images.png"),
        st.just(None),
        st.just(0.5),
        st.just({"images": np.zeros((2, 3, 16, 16))}),
    )


def _check_features(features, n_images, n_views):
    if features is not None:
        assert features.shape[0] == n_images and features.shape[1] % n_views == 0, features.shape
        assert np.all(np.isfinite(features))


@settings(FUZZ, max_examples=80)
@given(images=st.one_of(image_inputs(), malformed_images()), n_views=st.sampled_from([1, 2]),
       pooling=st.sampled_from(["mean", "flatten"]))
def test_feature_extractor_input_is_features_or_a_clear_error(tiny_net, images, n_views, pooling):
    extractor = FeatureExtractor(tiny_net, n_views=n_views, pooling=pooling, batch_size=2, random_state=0)
    features = _call(extractor.fit_transform, images)
    n_images = getattr(images, "shape", (0,))[0] if features is not None else 0
    _check_features(features, n_images, n_views)
    if features is not None:  # fitted: transform reads the same input the same way
        np.testing.assert_array_equal(_call(extractor.transform, images), features)


@settings(FUZZ, max_examples=60)
@given(sigma=st.one_of(magnitudes().map(abs), st.sampled_from([0.0, -1.0, np.nan, np.inf, 1e-18, 1e18, "0.1"])),
       n_views=st.sampled_from([1, 2, 0, -1, 2.5]), batch_size=st.sampled_from([1, 3, 0, None]))
def test_feature_extractor_parameters_are_features_or_a_clear_error(tiny_net, sigma, n_views, batch_size):
    images = np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32)
    extractor = FeatureExtractor(tiny_net, sigma=sigma, n_views=n_views, batch_size=batch_size, random_state=0)
    features = _call(extractor.fit_transform, images)
    _check_features(features, 3, n_views if isinstance(n_views, int) and n_views > 0 else 1)
