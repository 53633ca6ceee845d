"""Online memorization detectors: would the signal fire at the latest evaluation?

Each detector is a function of the evaluations recorded so far (a history frame with a
``step`` column and the columns it reads, in step order) that answers for the *latest*
evaluation only: has the alarm gone off, and which earlier checkpoint should be kept. None of
them looks ahead, so :func:`first_alarm`, which calls a detector on every prefix of a stored
trajectory, reproduces what it would have done during training, one evaluation at a time.

Detectors (``DETECTORS``):

- ``"turning_point"``: :func:`~skicr.monitoring.detect_turning_point` on ICR (smoothed minimum,
  bootstrap test of the rise after it).
- ``"cusum"``: one-sided CUSUM of the relative ICR increments.
- ``"page_hinkley"``: Page-Hinkley test for an increase of the mean relative ICR increment.
- ``"mann_kendall"``: Mann-Kendall trend test (Kendall's tau against time) over a trailing
  window of ICR.
- ``"expansion_split"``: the share of new spread ``tr(Sigma_s) + tr(Sigma_xi)`` going to
  ``Sigma_xi`` over a trailing window, compared with ``Sigma_xi``'s share before it.
- ``"heldout_gap"``: the relative gap between ICR on held-out images and on training images.
"""

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from .._utils.validation import check_int

__all__ = [
    "Alarm", "DEFAULT_RULE", "DETECTORS", "FALLBACK_RULE", "STUDY_SETTINGS", "StoppingVerdict", "cusum_detector",
    "expansion_split_detector", "first_alarm", "heldout_gap_detector", "mann_kendall_detector",
    "page_hinkley_detector", "run_detector", "stopping_verdict", "turning_point_detector",
]


@dataclass(frozen=True)
class Alarm:
    """What a detector says at one evaluation.

    Attributes
    ----------
    detector : str
        Name of the detector.
    fired : bool
        Whether the alarm is on at this evaluation.
    step : int or None
        The evaluation's step (where the alarm fired, when ``fired``).
    checkpoint : int or None
        Step of the checkpoint the detector recommends keeping (rolling
        back to): its estimate of where the change began. None when it has
        no estimate yet.
    statistic : float
        The detector's statistic at this evaluation (nan when it cannot be
        computed yet).
    threshold : float
        The value ``statistic`` must exceed to fire.
    """

    detector: str
    fired: bool
    step: object
    checkpoint: object
    statistic: float
    threshold: float


def _column(history, name):
    if name not in history:
        raise ValueError(f"this detector needs the column {name!r}; the history has "
                         f"{list(history.columns)}.")
    values = np.asarray(history[name], dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"column {name!r} contains NaN or infinite values.")
    return values


def _check_number(name, value, low, low_closed=True):
    if not isinstance(value, Real) or isinstance(value, bool) or not (
            value >= low if low_closed else value > low):
        bound = ">=" if low_closed else ">"
        raise ValueError(f"{name} must be a number {bound} {low}; got {value!r}.")
    return float(value)


def _quiet(name, steps, statistic=np.nan, threshold=np.nan, checkpoint=None):
    return Alarm(name, False, int(steps[-1]) if len(steps) else None, checkpoint,
                 float(statistic), float(threshold))


def _relative_increments(values):
    """``(x_t - x_{t-1}) / x_{t-1}``: ICR changes in units of its level (scale-free)."""
    return np.diff(values) / np.abs(values[:-1])


# ---------------------------------------------------------------------------- detectors


def turning_point_detector(history, *, min_rise=0.02, alpha=0.05, window=None,
                           n_bootstrap=1000, random_state=0):
    """Turning-point test on ICR: fires when ICR has significantly risen after its minimum.

    Parameters
    ----------
    history : pandas.DataFrame
        Evaluations so far with ``step`` and ``icr``, in step order.
    min_rise : float, default=0.02
        Smallest rise, relative to the smoothed minimum, that counts.
    alpha : float, default=0.05
        Significance level of the bootstrap test.
    window : int or None, default=None
        Moving-average window (see :func:`~skicr.monitoring.detect_turning_point`).
    n_bootstrap : int, default=1000
        Null replicates of the test.
    random_state : int, default=0
        Seed of the replicates.

    Returns
    -------
    alarm : Alarm
        ``statistic`` is the confidence ``1 - p_value``, ``threshold`` is
        ``1 - alpha``; the checkpoint is the smoothed minimum.
    """
    from ._turning_point import detect_turning_point

    steps, icr = np.asarray(history["step"]), _column(history, "icr")
    if len(steps) < 3:
        return _quiet("turning_point", steps, threshold=1 - alpha)
    if window is not None and (window > len(steps) or window % 2 == 0):
        window = None  # too few points yet for the requested window: the default one
    result = detect_turning_point(steps, icr, min_rise=min_rise, alpha=alpha, window=window,
                                  n_bootstrap=n_bootstrap, random_state=random_state)
    checkpoint = None if result.step is None else int(result.step)
    return Alarm("turning_point", bool(result.found), int(steps[-1]), checkpoint,
                 float(result.confidence), 1.0 - alpha)


def cusum_detector(history, *, drift=0.002, threshold=0.03):
    """One-sided CUSUM of the relative ICR increments.

    ``S_t = max(0, S_{t-1} + r_t - drift)`` with ``r_t = (ICR_t - ICR_{t-1}) /
    ICR_{t-1}``; fires when ``S_t > threshold``: ICR has climbed, beyond a
    tolerated drift per evaluation, by a cumulative fraction ``threshold``.

    Parameters
    ----------
    history : pandas.DataFrame
        Evaluations so far with ``step`` and ``icr``, in step order.
    drift : float, default=0.002
        Relative rise per evaluation that is tolerated (CUSUM's ``k``).
    threshold : float, default=0.03
        Alarm level of the cumulative sum (CUSUM's ``h``).

    Returns
    -------
    alarm : Alarm
        ``statistic`` is ``S_t``; the checkpoint is the last evaluation
        at which ``S`` was 0 (just before the accumulated rise began).
    """
    drift = _check_number("drift", drift, 0)
    threshold = _check_number("threshold", threshold, 0, low_closed=False)
    steps, icr = np.asarray(history["step"]), _column(history, "icr")
    if len(steps) < 2:
        return _quiet("cusum", steps, threshold=threshold)
    total, last_zero = 0.0, 0
    for position, increment in enumerate(_relative_increments(icr), start=1):
        total = max(0.0, total + increment - drift)
        if total == 0.0:
            last_zero = position
    return Alarm("cusum", total > threshold, int(steps[-1]), int(steps[last_zero]), total,
                 threshold)


def page_hinkley_detector(history, *, delta=0.002, threshold=0.03, min_rise=0.02):
    """Page-Hinkley test for an increase of the mean relative ICR increment.

    ``m_t = sum_i (r_i - mean(r_1..r_i) - delta)``, ``M_t = min_i m_i``; fires
    when ``m_t - M_t > threshold`` and the latest ICR is at least ``min_rise``
    (relative) above the lowest so far. The guard is needed because a
    decrease that levels off is, for the increments, an increase of their
    mean (from negative to zero): without it the test fires on every plateau.

    Parameters
    ----------
    history : pandas.DataFrame
        Evaluations so far with ``step`` and ``icr``, in step order.
    delta : float, default=0.002
        Tolerated increase of the increment over its running mean.
    threshold : float, default=0.03
        Alarm level (Page-Hinkley's ``lambda``).
    min_rise : float, default=0.02
        Rise of the latest ICR over the lowest so far, relative to it (0: the
        plain test).

    Returns
    -------
    alarm : Alarm
        ``statistic`` is ``m_t - M_t``; the checkpoint is the evaluation at
        which ``m`` was smallest (the estimated change point).
    """
    delta = _check_number("delta", delta, 0)
    threshold = _check_number("threshold", threshold, 0, low_closed=False)
    min_rise = _check_number("min_rise", min_rise, 0)
    steps, icr = np.asarray(history["step"]), _column(history, "icr")
    if len(steps) < 3:
        return _quiet("page_hinkley", steps, threshold=threshold)
    increments = _relative_increments(icr)
    running_mean = np.cumsum(increments) / np.arange(1, increments.size + 1)
    cumulative = np.concatenate([[0.0], np.cumsum(increments - running_mean - delta)])
    lowest = int(np.argmin(cumulative))
    statistic = float(cumulative[-1] - cumulative[lowest])
    rose = icr[-1] >= (1 + min_rise) * icr.min()
    return Alarm("page_hinkley", bool(statistic > threshold and rose), int(steps[-1]),
                 int(steps[lowest]), statistic, threshold)


def mann_kendall_detector(history, *, window=6, alpha=0.05, min_rise=0.02):
    """Mann-Kendall trend test over the last ``window`` evaluations of ICR.

    Kendall's tau of ICR against time over the trailing window, one-sided
    (an upward trend, :func:`scipy.stats.kendalltau`); fires when its p-value
    is below ``alpha`` and the latest ICR is at least ``min_rise`` (relative)
    above the lowest ICR so far.

    Parameters
    ----------
    history : pandas.DataFrame
        Evaluations so far with ``step`` and ``icr``, in step order.
    window : int, default=6
        Trailing evaluations tested (at least 4).
    alpha : float, default=0.05
        Significance level of the trend test.
    min_rise : float, default=0.02
        Rise of the latest ICR over the lowest so far, relative to it.

    Returns
    -------
    alarm : Alarm
        ``statistic`` is ``1 - p_value``, ``threshold`` is ``1 - alpha``; the
        checkpoint is the lowest ICR so far.
    """
    from scipy.stats import kendalltau

    window = check_int("window", window, 4)
    min_rise = _check_number("min_rise", min_rise, 0)
    steps, icr = np.asarray(history["step"]), _column(history, "icr")
    lowest = int(np.argmin(icr)) if len(icr) else None
    checkpoint = None if lowest is None else int(steps[lowest])
    if len(steps) < window:
        return _quiet("mann_kendall", steps, threshold=1 - alpha, checkpoint=checkpoint)
    tail = icr[-window:]
    p_value = float(kendalltau(np.arange(window), tail, alternative="greater").pvalue)
    rose = icr[-1] >= (1 + min_rise) * icr[lowest]
    return Alarm("mann_kendall", bool(p_value < alpha and rose), int(steps[-1]), checkpoint,
                 1.0 - p_value, 1.0 - alpha)


def expansion_split_detector(history, *, window=4, margin=0.05):
    """The share of new spread going to Sigma_xi, against Sigma_xi's share before it.

    Over the last ``window`` evaluations, the growth of ``tr(Sigma_s)`` and
    ``tr(Sigma_xi)``; when the total grew, the share of it that went to
    ``Sigma_xi`` minus ``Sigma_xi``'s share of the spread at the window's
    start. The seed paper names expansion into ``Sigma_xi`` as the
    limited-data signature; fires when that excess is above ``margin``.

    Parameters
    ----------
    history : pandas.DataFrame
        Evaluations so far with ``step``, ``trace_s`` and ``trace_xi``, in step
        order.
    window : int, default=4
        Trailing evaluations over which the growth is measured (at least 1).
    margin : float, default=0.05
        Excess share that fires.

    Returns
    -------
    alarm : Alarm
        ``statistic`` is the excess share (nan when the spread did not grow);
        the checkpoint is the window's start.
    """
    window = check_int("window", window, 1)
    margin = _check_number("margin", margin, -1)
    steps = np.asarray(history["step"])
    trace_s, trace_xi = _column(history, "trace_s"), _column(history, "trace_xi")
    if len(steps) <= window:
        return _quiet("expansion_split", steps, threshold=margin)
    start = len(steps) - 1 - window
    grow_s, grow_xi = trace_s[-1] - trace_s[start], trace_xi[-1] - trace_xi[start]
    if grow_s + grow_xi <= 0:
        return _quiet("expansion_split", steps, threshold=margin, checkpoint=int(steps[start]))
    before = trace_xi[start] / (trace_s[start] + trace_xi[start])
    excess = float(grow_xi / (grow_s + grow_xi) - before)
    return Alarm("expansion_split", excess > margin, int(steps[-1]), int(steps[start]), excess,
                 margin)


def heldout_gap_detector(history, *, threshold=0.03, direction="opens", smooth=3):
    """The gap between ICR on held-out images and on training images.

    ``g_t = (ICR_heldout - ICR_train) / ICR_train``, averaged over the last
    ``smooth`` evaluations. ``direction="opens"`` fires when ``g`` has risen
    ``threshold`` above its lowest value so far (the training images becoming
    cleaner than unseen ones); ``"closes"`` when it has fallen ``threshold``
    below its highest.

    Parameters
    ----------
    history : pandas.DataFrame
        Evaluations so far with ``step``, ``icr`` and ``heldout_icr``, in step
        order.
    threshold : float, default=0.03
        Change of the relative gap that fires.
    direction : {"opens", "closes"}, default="opens"
        Which way of the gap's movement is the alarm.
    smooth : int, default=3
        Trailing moving average of the gap (1: none).

    Returns
    -------
    alarm : Alarm
        ``statistic`` is the gap's move from its extreme so far; the
        checkpoint is the last evaluation at which the gap was within a
        quarter of ``threshold`` of that extreme.
    """
    threshold = _check_number("threshold", threshold, 0, low_closed=False)
    smooth = check_int("smooth", smooth, 1)
    if direction not in ("opens", "closes"):
        raise ValueError(f"direction must be 'opens' or 'closes'; got {direction!r}.")
    steps = np.asarray(history["step"])
    train, held = _column(history, "icr"), _column(history, "heldout_icr")
    if len(steps) < smooth + 1:
        return _quiet("heldout_gap", steps, threshold=threshold)
    gap = (held - train) / np.abs(train)
    gap = np.convolve(gap, np.ones(smooth) / smooth, mode="valid")  # trailing: index i+smooth-1
    sign = 1.0 if direction == "opens" else -1.0
    moved = sign * gap - np.min(sign * gap)
    statistic = float(moved[-1])
    # the last evaluation at which the gap was still within a quarter of the threshold of its
    # extreme: on a flat stretch that is its end, the latest checkpoint before the move
    quiet = int(np.flatnonzero(moved <= 0.25 * threshold)[-1])
    return Alarm("heldout_gap", statistic > threshold, int(steps[-1]),
                 int(steps[quiet + smooth - 1]), statistic, threshold)


#: the detectors by name: ``DETECTORS[name](history, **params) -> Alarm``
DETECTORS = {
    "turning_point": turning_point_detector,
    "cusum": cusum_detector,
    "page_hinkley": page_hinkley_detector,
    "mann_kendall": mann_kendall_detector,
    "expansion_split": expansion_split_detector,
    "heldout_gap": heldout_gap_detector,
}


def _check_rule_params(name, params):
    """``params`` as a checked dict for detector ``name``: unknown keys and bad values fail now.

    The detector runs once on a small synthetic history (every column present) with the
    parameters, so a bad value raises the error it would raise deep into training.
    """
    import inspect

    import pandas as pd

    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {sorted(DETECTORS)}.")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise TypeError(f"the parameters of {name!r} must be a dict; got {type(params).__name__}.")
    accepted = [p for p in inspect.signature(DETECTORS[name]).parameters if p != "history"]
    unknown = set(params) - set(accepted)
    if unknown:
        raise ValueError(f"unknown parameters {sorted(unknown)} for the {name!r} rule; it takes "
                         f"{accepted}.")
    steps = np.arange(12) * 100
    dummy = pd.DataFrame({"step": steps, "icr": 0.3 + 0.001 * np.cos(steps),
                          "heldout_icr": 0.33 + 0.0, "trace_s": 1.0 + steps / 1e3,
                          "trace_xi": 1.0 + steps / 2e3})
    DETECTORS[name](dummy, **{**params, **({"n_bootstrap": 0} if name == "turning_point"
                                           else {})})
    return dict(params)


def run_detector(name, history, *, warmup_step=0, **params):
    """Ask detector ``name`` about the latest evaluation of ``history``.

    Parameters
    ----------
    name : str
        A key of ``DETECTORS``.
    history : pandas.DataFrame
        Evaluations so far, with a ``step`` column; sorted by step here.
    warmup_step : int, default=0
        Evaluations before this step are ignored (a freshly initialised
        network's ICR moves up and down).
    **params
        Parameters of the detector.

    Returns
    -------
    alarm : Alarm
    """
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {sorted(DETECTORS)}.")
    if "step" not in history:
        raise ValueError("the history needs a 'step' column.")
    history = history.sort_values("step")
    history = history[history["step"] >= warmup_step].reset_index(drop=True)
    if history.empty:
        return Alarm(name, False, None, None, np.nan, np.nan)
    return DETECTORS[name](history, **params)


def first_alarm(name, history, *, warmup_step=0, **params):
    """Replay a stored trajectory one evaluation at a time; the first alarm, or None.

    Parameters
    ----------
    name : str
        A key of ``DETECTORS``.
    history : pandas.DataFrame
        A whole trajectory, with a ``step`` column.
    warmup_step : int, default=0
        Evaluations before this step are ignored.
    **params
        Parameters of the detector.

    Returns
    -------
    alarm : Alarm or None
        The alarm at the first evaluation at which the detector, seeing only
        the evaluations up to it, fires; None if it never does.
    """
    history = history.sort_values("step").reset_index(drop=True)
    for end in range(1, len(history) + 1):
        alarm = run_detector(name, history.iloc[:end], warmup_step=warmup_step, **params)
        if alarm.fired:
            return alarm
    return None


# ---------------------------------------------------------------------------- the verdict


@dataclass(frozen=True)
class StoppingVerdict:
    """The early-stopping verdict on a training run, in numbers and in one sentence.

    Attributes
    ----------
    rule : str
        The detector that decided.
    params : dict
        Its parameters (with ``warmup_step``).
    fired : bool
        Whether the rule fired.
    step : int or None
        Evaluation at which it first fired (None if it did not).
    checkpoint : int or None
        The checkpoint to keep: the rule's estimate of where ICR started to
        rise (None if it did not fire).
    confidence : float
        How sure the rise is real: ``1 - p_value`` of the turning-point
        bootstrap test (:func:`~skicr.monitoring.detect_turning_point`) on the
        evaluations from the warm-up to the alarm (to the last evaluation when
        the rule did not fire); nan with fewer than 5 evaluations.
    relative_rise : float
        ICR at the alarm (or the last evaluation) over the lowest ICR before
        it, minus 1.
    n_evaluations : int
        Evaluations the verdict is based on.
    memorization_at_checkpoint : float or None
        Memorization ratio measured at the kept checkpoint, when measured.
    first_memorized : int or None
        First evaluated step with a memorized sample, when measured.
    """

    rule: str
    params: dict
    fired: bool
    step: object
    checkpoint: object
    confidence: float
    relative_rise: float
    n_evaluations: int
    memorization_at_checkpoint: object = None
    first_memorized: object = None

    def sentence(self):
        """The verdict in plain words.

        Returns
        -------
        text : str
            When the rule fired, the checkpoint to keep, how sure; or why it
            did not.
        """
        if self.n_evaluations == 0:
            return "No evaluation yet: nothing to say about memorization."
        sure = ("" if not np.isfinite(self.confidence) else
                f" (confidence that ICR has turned up: {self.confidence:.2f})")
        if not self.fired:
            text = (f"No memorization warning ({self.rule}, {self.n_evaluations} evaluations): "
                    f"ICR is {100 * self.relative_rise:+.1f}% over its lowest value, which the "
                    f"rule does not count as a rise{sure}; keep training or keep the last "
                    "checkpoint.")
        else:
            text = (f"Memorization warning at step {self.step} ({self.rule}): ICR is "
                    f"{100 * self.relative_rise:+.1f}% over its lowest value{sure}. Keep the "
                    f"checkpoint of step {self.checkpoint}.")
            if self.memorization_at_checkpoint is not None:
                text += (f" Its measured memorization ratio is "
                         f"{self.memorization_at_checkpoint:.3f}.")
        if self.first_memorized is not None:
            text += f" The first memorized sample appeared at step {self.first_memorized}."
        return text

    def to_dict(self):
        """The verdict as a JSON-ready dict (with the sentence).

        Returns
        -------
        record : dict
            The attributes (nan as None) and ``sentence``.
        """
        return {
            "rule": self.rule, "params": dict(self.params), "fired": self.fired,
            "step": self.step, "checkpoint": self.checkpoint,
            "confidence": None if not np.isfinite(self.confidence) else float(self.confidence),
            "relative_rise": None if not np.isfinite(self.relative_rise)
            else float(self.relative_rise),
            "n_evaluations": self.n_evaluations,
            "memorization_at_checkpoint": self.memorization_at_checkpoint,
            "first_memorized": self.first_memorized, "sentence": self.sentence(),
        }


def stopping_verdict(history, rule, *, warmup_step=0, **params):
    """Replay ``rule`` on a history and state the verdict.

    Parameters
    ----------
    history : pandas.DataFrame
        The evaluations (an :attr:`ICRMonitor.history_`).
    rule : str
        A key of ``DETECTORS``.
    warmup_step : int, default=0
        Evaluations before this step are ignored.
    **params
        Parameters of the rule.

    Returns
    -------
    verdict : StoppingVerdict
    """
    from ._turning_point import detect_turning_point

    history = history.sort_values("step").reset_index(drop=True)
    alarm = first_alarm(rule, history, warmup_step=warmup_step, **params)
    tested = history[history["step"] >= warmup_step]
    if alarm is not None:
        tested = tested[tested["step"] <= alarm.step]
    confidence, rise = np.nan, np.nan
    if len(tested):
        icr = tested["icr"].to_numpy(dtype=float)
        rise = float(icr[-1] / icr.min() - 1)
        if len(tested) >= 5:
            confidence = float(detect_turning_point(tested["step"].to_numpy(), icr,
                                                    n_bootstrap=1000).confidence)
    memorization, first = None, None
    if "memorization_ratio" in history:
        hit = history.loc[history["memorization_ratio"] > 0, "step"]
        first = None if hit.empty else int(hit.iloc[0])
        if alarm is not None and alarm.checkpoint is not None:
            at = history.loc[history["step"] == alarm.checkpoint, "memorization_ratio"]
            memorization = None if at.empty else float(at.iloc[0])
    return StoppingVerdict(
        rule=rule, params={"warmup_step": warmup_step, **params}, fired=alarm is not None,
        step=None if alarm is None else alarm.step,
        checkpoint=None if alarm is None else alarm.checkpoint, confidence=confidence,
        relative_rise=rise, n_evaluations=int(len(tested)),
        memorization_at_checkpoint=memorization, first_memorized=first)


# ---------------------------------------------------------------------------- the default rule

#: ICRMonitor's early-stopping rule (``early_stopping=True``) and its settings: the detector
#: chosen on the development half of the memorization study (docs/monitoring.md,
#: benchmarks/results/memorization/chosen.json)
DEFAULT_RULE = "heldout_gap"
#: the rule ``early_stopping=True`` uses when the monitor has no held-out images: the study's
#: runner-up among the detectors that need none
FALLBACK_RULE = "expansion_split"
#: each detector's settings chosen on the study's development half: (parameters, warm-up step)
STUDY_SETTINGS = {
    "turning_point": ({"min_rise": 0.01, "alpha": 0.05}, 0),
    "cusum": ({"drift": 0.005, "threshold": 0.03}, 100),
    "page_hinkley": ({"delta": 0.005, "threshold": 0.05, "min_rise": 0.02}, 200),
    "mann_kendall": ({"window": 8, "alpha": 0.05, "min_rise": 0.01}, 300),
    "expansion_split": ({"window": 2, "margin": 0.2}, 0),
    "heldout_gap": ({"threshold": 0.02, "direction": "opens", "smooth": 1}, 100),
}
