"""Online memorization detectors on synthetic trajectories with known change points."""

import math

import numpy as np
import pandas as pd
import pytest

from skicr.monitoring._detectors import DETECTORS, first_alarm, run_detector

STEPS = np.arange(0, 4000, 100)  # 40 evaluations
CHANGE = 20                        # index of the minimum: step 2000


def _v_shape(seed, rise=0.004, noise=0.0005):
    """ICR falling until evaluation CHANGE, then rising by ``rise`` (relative) per evaluation."""
    rng = np.random.default_rng(seed)
    index = np.arange(STEPS.size)
    icr = np.where(index <= CHANGE, 0.40 - 0.002 * index,
                   (0.40 - 0.002 * CHANGE) * (1 + rise) ** (index - CHANGE))
    return icr * (1 + noise * rng.standard_normal(STEPS.size))


def _plateau(seed, noise=0.0005):
    """ICR falling, then flat: no change to detect."""
    rng = np.random.default_rng(seed)
    icr = np.maximum(0.40 - 0.002 * np.arange(STEPS.size), 0.36)
    return icr * (1 + noise * rng.standard_normal(STEPS.size))


def _frame(icr, **columns):
    return pd.DataFrame({"step": STEPS[: len(icr)], "icr": icr, **columns})


ICR_DETECTORS = {
    "turning_point": {"min_rise": 0.02, "n_bootstrap": 300},
    "cusum": {"drift": 0.001, "threshold": 0.02},
    "page_hinkley": {"delta": 0.001, "threshold": 0.02, "min_rise": 0.02},
    "mann_kendall": {"window": 6, "alpha": 0.05, "min_rise": 0.02},
}


@pytest.mark.parametrize("name", sorted(ICR_DETECTORS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_icr_detectors_fire_after_the_change_and_point_back_to_it(name, seed):
    alarm = first_alarm(name, _frame(_v_shape(seed)), **ICR_DETECTORS[name])
    assert alarm is not None and alarm.fired
    # not before the change; within 10 evaluations of a +0.4%/evaluation rise
    assert STEPS[CHANGE] < alarm.step <= STEPS[CHANGE + 10]
    # the recommended checkpoint is near the true minimum
    assert abs(alarm.checkpoint - STEPS[CHANGE]) <= 300


@pytest.mark.parametrize("name", sorted(ICR_DETECTORS))
def test_icr_detectors_stay_quiet_on_a_plateau(name):
    fired = [first_alarm(name, _frame(_plateau(seed)), **ICR_DETECTORS[name]) is not None
             for seed in range(10)]
    assert sum(fired) <= 1


@pytest.mark.parametrize("name", sorted(ICR_DETECTORS))
def test_online_replay_sees_no_future(name):
    """The alarm at evaluation t depends only on evaluations up to t."""
    icr = _v_shape(0)
    alarm = first_alarm(name, _frame(icr), **ICR_DETECTORS[name])
    end = int(np.flatnonzero(STEPS == alarm.step)[0]) + 1
    changed = icr.copy()
    changed[end:] = 10.0  # anything after the alarm
    assert first_alarm(name, _frame(changed), **ICR_DETECTORS[name]) == alarm
    # and one evaluation earlier the alarm is off
    assert not run_detector(name, _frame(icr[: end - 1]), **ICR_DETECTORS[name]).fired


def test_cusum_matches_a_hand_computation():
    icr = np.array([1.0, 1.0, 1.1, 1.21, 1.21, 1.331])
    # relative increments 0, 0.1, 0.1, 0, 0.1; drift 0.05: S = 0, 0.05, 0.1, 0.05, 0.1
    alarm = run_detector("cusum", _frame(icr), drift=0.05, threshold=0.09)
    assert alarm.statistic == pytest.approx(0.1)
    assert alarm.fired and alarm.checkpoint == STEPS[1]  # S was last 0 after the 2nd evaluation
    assert not run_detector("cusum", _frame(icr[:5]), drift=0.05, threshold=0.09).fired


def test_page_hinkley_matches_a_hand_computation():
    icr = np.array([1.0, 1.0, 1.0, 1.1])
    # increments 0, 0, 0.1; running means 0, 0, 1/30; m = 0, 0, 0, 0.1 - 1/30 (delta 0)
    alarm = run_detector("page_hinkley", _frame(icr), delta=0.0, threshold=0.06, min_rise=0.0)
    assert alarm.statistic == pytest.approx(0.1 - 1 / 30)
    assert alarm.fired and alarm.checkpoint == STEPS[0]


def test_page_hinkley_without_guard_fires_on_a_plateau():
    """Documented failure mode: a decrease levelling off raises the increments' mean."""
    frame = _frame(_plateau(0))
    assert first_alarm("page_hinkley", frame, delta=0.001, threshold=0.02, min_rise=0.0)
    assert first_alarm("page_hinkley", frame, delta=0.001, threshold=0.02) is None


def test_mann_kendall_exact_p_value_of_a_strictly_increasing_window():
    icr = np.array([0.5, 0.4, 0.41, 0.42, 0.43, 0.44, 0.45])
    alarm = run_detector("mann_kendall", _frame(icr), window=6, alpha=0.01, min_rise=0.1)
    # six strictly increasing points: the one ordering out of 6! under the null
    assert alarm.statistic == pytest.approx(1 - 1 / math.factorial(6))
    assert alarm.fired and alarm.checkpoint == STEPS[1]
    # the same window without a 10% rise over the lowest ICR does not fire
    assert not run_detector("mann_kendall", _frame(icr), window=6, alpha=0.01,
                            min_rise=0.2).fired


def test_expansion_split_fires_when_growth_moves_to_sigma_xi():
    n = 30
    index = np.arange(n)
    change = 15
    # the spread grows evenly (share kept at 0.5) until `change`, then only Sigma_xi grows
    trace_s = 1.0 + 0.1 * np.minimum(index, change)
    trace_xi = 1.0 + 0.1 * index
    frame = pd.DataFrame({"step": STEPS[:n], "trace_s": trace_s, "trace_xi": trace_xi})
    alarm = first_alarm("expansion_split", frame, window=4, margin=0.2)
    assert alarm is not None
    assert STEPS[change] < alarm.step <= STEPS[change + 4]
    assert alarm.checkpoint >= STEPS[change - 4]
    # balanced growth never fires
    balanced = frame.assign(trace_xi=trace_s * 1.5)
    assert first_alarm("expansion_split", balanced, window=4, margin=0.05) is None


@pytest.mark.parametrize("direction, sign", [("opens", 1.0), ("closes", -1.0)])
def test_heldout_gap_fires_when_the_gap_moves(direction, sign):
    n, change = 30, 12
    rng = np.random.default_rng(0)
    train = 0.35 + 0.001 * rng.standard_normal(n)
    gap = 0.05 + sign * 0.01 * np.maximum(np.arange(n) - change, 0)  # relative gap
    frame = pd.DataFrame({"step": STEPS[:n], "icr": train, "heldout_icr": train * (1 + gap)})
    alarm = first_alarm("heldout_gap", frame, threshold=0.03, direction=direction, smooth=3)
    assert alarm is not None
    assert STEPS[change] < alarm.step <= STEPS[change + 6]
    assert abs(alarm.checkpoint - STEPS[change]) <= 300
    other = "closes" if direction == "opens" else "opens"
    assert first_alarm("heldout_gap", frame, threshold=0.03, direction=other) is None


def test_warmup_ignores_early_evaluations():
    icr = np.concatenate([[0.5, 0.3, 0.45], np.full(20, 0.45)])  # an early dip and bump
    frame = _frame(icr)
    assert first_alarm("cusum", frame, drift=0.0, threshold=0.1) is not None
    assert first_alarm("cusum", frame, drift=0.0, threshold=0.1, warmup_step=200) is None


def test_bad_input_is_named():
    frame = _frame(_v_shape(0))
    with pytest.raises(ValueError, match="unknown detector"):
        run_detector("nope", frame)
    with pytest.raises(ValueError, match="heldout_icr"):
        run_detector("heldout_gap", frame)
    with pytest.raises(ValueError, match="NaN"):
        run_detector("cusum", frame.assign(icr=np.nan))
    with pytest.raises(ValueError, match="threshold"):
        run_detector("cusum", frame, threshold=0)
    with pytest.raises(ValueError, match="window"):
        run_detector("mann_kendall", frame, window=2)
    with pytest.raises(ValueError, match="direction"):
        run_detector("heldout_gap", frame.assign(heldout_icr=frame["icr"]), direction="up")
    with pytest.raises(TypeError):
        run_detector("cusum", frame, drif=0.1)


def test_every_detector_is_registered():
    assert set(DETECTORS) == {"turning_point", "cusum", "page_hinkley", "mann_kendall",
                              "expansion_split", "heldout_gap"}


def test_verdict_states_alarm_checkpoint_and_memorization():
    from skicr.monitoring._detectors import stopping_verdict

    icr = _v_shape(0)
    memorization = np.where(np.arange(STEPS.size) >= 30, 0.1, 0.0)
    frame = _frame(icr, memorization_ratio=memorization)
    params = ICR_DETECTORS["cusum"]
    verdict = stopping_verdict(frame, "cusum", **params)
    alarm = first_alarm("cusum", frame, **params)
    assert verdict.fired and verdict.step == alarm.step and verdict.checkpoint == alarm.checkpoint
    assert verdict.memorization_at_checkpoint == 0.0
    assert verdict.first_memorized == STEPS[30]
    assert verdict.confidence > 0.95  # a clear rise by the alarm
    text = verdict.sentence()
    assert f"step {alarm.step}" in text and f"checkpoint of step {alarm.checkpoint}" in text
    record = verdict.to_dict()
    assert record["fired"] and record["sentence"] == text and record["params"]["threshold"] == 0.02
    quiet = stopping_verdict(_frame(_plateau(0)), "cusum", **params)
    assert not quiet.fired and quiet.checkpoint is None
    assert "No memorization warning" in quiet.sentence()
