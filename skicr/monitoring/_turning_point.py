"""Early-stopping signal: the minimum of a noisy ICR trajectory and whether ICR has turned up."""

from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_parameter_constraints, validate_params

__all__ = ["TurningPoint", "detect_turning_point"]

# MAD of a standard normal; second differences of iid noise have variance 6 sigma^2
_MAD_TO_STD = 1.4826
_SECOND_DIFF_SCALE = np.sqrt(6.0)
# the noise is estimated from n - 2 second differences: fewer than 3 say nothing
_MIN_POINTS_TO_TEST = 5


@dataclass(frozen=True)
class TurningPoint:
    """Result of :func:`detect_turning_point`.

    Attributes
    ----------
    found : bool
        True when the trajectory has risen significantly after its (smoothed)
        minimum: ``p_value < alpha`` and a relative rise of at least
        ``min_rise``. The early-stopping signal.
    step : int, float or None
        Step of the smoothed minimum (the checkpoint to keep); None when the
        smoothed minimum is the last point (still decreasing).
    index : int or None
        Position of that step in the trajectory.
    confidence : float
        ``1 - p_value``.
    p_value : float
        Probability, under a non-increasing trajectory with the measured noise,
        of a rise after the minimum at least as large as the observed one
        (parametric bootstrap; see :func:`detect_turning_point`).
    rise : float
        Smoothed last value minus smoothed minimum (0 when still decreasing).
    noise : float
        Estimated standard deviation of the point-to-point noise.
    step_interval : tuple of two float
        Bootstrap 90% interval of the minimum's step (where the minimum could
        be given the noise); ``(nan, nan)`` without bootstrap replicates.
    smoothed : ndarray of shape (n_points,)
        The smoothed trajectory.
    steps : ndarray of shape (n_points,)
        The steps, as given.
    window : int
        Moving-average window used (1: no smoothing).

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.monitoring import detect_turning_point
    >>> steps = np.arange(0, 3000, 100)
    >>> icr = 0.4 + 1e-8 * (steps - 1500) ** 2          # a U, minimum at step 1500
    >>> result = detect_turning_point(steps, icr)
    >>> result.found, int(result.step)
    (True, 1500)
    """

    found: bool
    step: object
    index: object
    confidence: float
    p_value: float
    rise: float
    noise: float
    step_interval: tuple
    smoothed: np.ndarray = field(repr=False)
    steps: np.ndarray = field(repr=False)
    window: int = 1

    @property
    def rise_over_noise(self):
        """The rise after the minimum in units of the point noise (inf if noise is 0)."""
        if self.noise == 0:
            return np.inf if self.rise > 0 else 0.0
        return self.rise / self.noise


def _default_window(n_points):
    """An odd window of about a fifth of the points, at least 3 (1 below 5 points)."""
    if n_points < 5:
        return 1
    window = max(3, n_points // 5)
    return window + 1 - window % 2


def _moving_average(values, window):
    """Centred moving average along the last axis, windows truncated at the ends.

    Every output is a mean of a contiguous run of inputs, and the runs slide
    monotonically, so a non-increasing input stays non-increasing: smoothing
    alone never invents a rise (a Savitzky-Golay filter can overshoot at a
    kink and would).
    """
    values = np.asarray(values, dtype=np.float64)
    if window == 1:
        return values.copy()
    n_points = values.shape[-1]
    half = window // 2
    lo = np.clip(np.arange(n_points) - half, 0, n_points)
    hi = np.clip(np.arange(n_points) + half + 1, 0, n_points)
    cumulative = np.concatenate(
        [np.zeros(values.shape[:-1] + (1,)), np.cumsum(values, axis=-1)], axis=-1
    )
    return (cumulative[..., hi] - cumulative[..., lo]) / (hi - lo)


def _noise_level(values):
    """Robust std of the point noise from second differences, along the last axis.

    Second differences of iid noise have variance 6 sigma^2; those of a smooth
    trend are nearly constant, which the median absolute deviation ignores.
    """
    second = np.diff(values, n=2, axis=-1)
    centred = second - np.median(second, axis=-1, keepdims=True)
    return _MAD_TO_STD * np.median(np.abs(centred), axis=-1) / _SECOND_DIFF_SCALE


def _rise(smoothed):
    """Last smoothed value minus the smoothed minimum, along the last axis."""
    return smoothed[..., -1] - smoothed.min(axis=-1)


#: the keyword parameters of detect_turning_point and what they accept
_PARAMETER_CONSTRAINTS = {
    "window": [Interval(Integral, 1, None, closed="left"), None],
    "min_rise": [Interval(Real, 0, None, closed="left")],
    "alpha": [Interval(Real, 0, 1, closed="neither")],
    "n_bootstrap": [Interval(Integral, 0, None, closed="left")],
    "random_state": ["random_state"],
}


def _check_turning_point_params(params):
    """``params`` as a dict of valid keyword arguments of :func:`detect_turning_point`.

    Checks now what a call would check, without a trajectory: unknown keys,
    types and ranges, and that ``window`` is odd.
    """
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise TypeError(f"turning_point_params must be a dict or None; got {type(params).__name__}.")
    unknown = set(params) - set(_PARAMETER_CONSTRAINTS)
    if unknown:
        raise ValueError(
            f"unknown turning_point_params {sorted(unknown)}; detect_turning_point takes "
            f"{sorted(_PARAMETER_CONSTRAINTS)}."
        )
    validate_parameter_constraints(_PARAMETER_CONSTRAINTS, params, caller_name="detect_turning_point")
    window = params.get("window")
    if window is not None and window % 2 == 0:
        raise ValueError(f"window must be odd; got {window}.")
    return dict(params)


@validate_params(
    {"steps": ["array-like"], "values": ["array-like"], **_PARAMETER_CONSTRAINTS},
    prefer_skip_nested_validation=True,
)
def detect_turning_point(steps, values, *, window=None, min_rise=0.0, alpha=0.05,
                         n_bootstrap=2000, random_state=0):
    """Find the minimum of a noisy trajectory and test whether it has turned upward.

    Meant for ICR across training checkpoints (lower is better): with enough
    data ICR keeps decreasing; with little data it turns up as the model
    starts to memorize, and its minimum is the checkpoint to keep.

    1. The trajectory is smoothed by a centred moving average of ``window``
       checkpoints (truncated at the ends), over checkpoint order, so
       checkpoints should be about evenly spaced. A moving average keeps a
       non-increasing trajectory non-increasing, so smoothing never invents
       a rise.
    2. The candidate is the smoothed minimum. The statistic is the *rise*,
       smoothed last value minus smoothed minimum, in units of the noise std.
    3. The noise std is estimated robustly from second differences (median
       absolute deviation), which a smooth trend barely affects.
    4. Null hypothesis: the trajectory is non-increasing. Its least
       favourable case (the one giving the largest rises) is a constant
       trajectory plus noise; ``n_bootstrap`` replicates of Gaussian noise,
       smoothed and studentized the same way, give the null distribution of
       the statistic. ``p_value`` is the fraction of null statistics at least
       as large as the observed one (+1 corrected) and ``confidence = 1 -
       p_value`` says how sure the rise is real and not noise on a plateau.
       The test is exact for a flat trajectory with Gaussian noise and
       conservative for a decreasing one.
    5. Replicates of the smoothed trajectory plus noise give a 90% interval
       for the minimum's step.

    ``found`` needs both statistical significance (``p_value < alpha``) and,
    if ``min_rise > 0``, practical significance: a smoothed rise of at least
    ``min_rise`` times the smoothed minimum. Checkpoints of one model measured
    on fixed views give smooth trajectories with little point noise, so tiny
    upticks can be significant; ``min_rise`` ignores them.

    A trajectory that rises from its first point has its minimum at the first
    step (``found`` when the rise is significant). A trajectory whose
    smoothed minimum is its last point is still decreasing: ``step`` is None.
    With fewer than 5 points the noise cannot be estimated: the minimum is
    reported but never ``found``.

    Parameters
    ----------
    steps : array-like of shape (n_points,)
        Training steps of the checkpoints, strictly increasing.
    values : array-like of shape (n_points,)
        The monitored quantity (ICR), lower is better; finite; at least 3
        points.
    window : int or None, default=None
        Moving-average window, odd, at most ``n_points`` (1: no smoothing).
        None: about a fifth of the points, at least 3 (no smoothing below 5
        points).
    min_rise : float, default=0.0
        Smallest rise, relative to the smoothed minimum, that counts (0.05: a
        5% rise).
    alpha : float, default=0.05
        Significance level of ``found``.
    n_bootstrap : int, default=2000
        Null replicates; 0 skips the test (``p_value`` is then 1, unless the
        trajectory has no noise at all).
    random_state : int, RandomState instance or None, default=0
        Seed of the replicates; fixed by default so that one trajectory always
        gives one answer.

    Returns
    -------
    result : TurningPoint
        ``found``, ``step`` (of the minimum), ``confidence``, ``p_value``,
        ``rise``, ``noise``, ``step_interval`` and the smoothed trajectory.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.monitoring import detect_turning_point
    >>> steps = np.arange(0, 3000, 100)
    >>> icr = 0.3 + 1e-8 * (steps - 1800) ** 2          # U-shaped, minimum at 1800
    >>> result = detect_turning_point(steps, icr)
    >>> result.found, result.step
    (True, 1800)
    >>> detect_turning_point(steps, 0.5 - 1e-4 * steps).found   # still decreasing
    False
    """
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=np.float64)
    if steps.ndim != 1 or values.ndim != 1 or steps.shape != values.shape:
        raise ValueError(
            f"steps and values must be 1-D of one length; got shapes {steps.shape} "
            f"and {values.shape}."
        )
    if values.size < 3:
        raise ValueError(
            f"a turning point needs at least 3 points of the trajectory; got {values.size}."
        )
    if not np.all(np.isfinite(values)):
        raise ValueError("values contain NaN or infinite values.")
    if not np.issubdtype(steps.dtype, np.number) or not np.all(np.diff(steps) > 0):
        raise ValueError("steps must be numbers in strictly increasing order.")
    n_points = values.size
    if window is None:
        window = _default_window(n_points)
    elif window > n_points or window % 2 == 0:
        raise ValueError(
            f"window must be odd and at most the number of points ({n_points}); got {window}."
        )

    smoothed = _moving_average(values, window)
    index = int(np.argmin(smoothed))
    rise = float(_rise(smoothed))
    noise = float(_noise_level(values))
    still_decreasing = index == n_points - 1
    rng = check_random_state(random_state)
    # a rise at rounding level (a flat tail) is no rise
    no_rise = rise <= 1e-12 * max(float(np.abs(values).max()), np.finfo(float).tiny)

    if still_decreasing or no_rise or n_points < _MIN_POINTS_TO_TEST:
        p_value = 1.0
    elif noise == 0:  # a noiseless rise (the smoother cannot make one up)
        p_value = 0.0
    elif n_bootstrap == 0:
        p_value = 1.0
    else:
        null = rng.standard_normal((n_bootstrap, n_points))
        null_noise = _noise_level(null)
        with np.errstate(divide="ignore", invalid="ignore"):
            null_statistic = _rise(_moving_average(null, window)) / null_noise
        null_statistic = np.where(null_noise > 0, null_statistic, np.inf)
        p_value = float((1 + np.sum(null_statistic >= rise / noise)) / (1 + n_bootstrap))

    if noise == 0:
        step_interval = (float(steps[index]), float(steps[index]))
    elif n_bootstrap:
        replicates = smoothed + noise * rng.standard_normal((n_bootstrap, n_points))
        where = np.argmin(_moving_average(replicates, window), axis=1)
        low, high = np.percentile(steps[where].astype(np.float64), [5, 95])
        step_interval = (float(low), float(high))
    else:
        step_interval = (np.nan, np.nan)

    return TurningPoint(
        found=bool(not still_decreasing and p_value < alpha
                   and rise >= min_rise * abs(float(smoothed[index]))),
        step=None if still_decreasing else steps[index].item(),
        index=None if still_decreasing else index,
        confidence=1.0 - p_value,
        p_value=p_value,
        rise=rise,
        noise=noise,
        step_interval=step_interval,
        smoothed=smoothed,
        steps=steps,
        window=int(window),
    )
