"""Memorization ratio, turning-point detector, s/xi retrieval and ICRMonitor."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.spatial.distance import cdist

from skicr import FeatureExtractor
from skicr.models import SmallUNet, save_denoiser, train_denoiser
from skicr.monitoring import (
    ICRMonitor,
    detect_turning_point,
    memorization_ratio,
    nearest_training_neighbors,
    retrieval_accuracy,
)


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return SmallUNet(channels=(4, 8), mid_channels=8, emb_dim=8, n_frequencies=2, image_size=8)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((24, 1, 8, 8), dtype=np.float32)


@pytest.fixture(scope="module")
def trained(images):
    return train_denoiser(images, n_steps=4, batch_size=8, net=tiny_net(), progress=False).ema_net


# ---------------------------------------------------------------- memorization ratio


def test_exact_copies_are_all_memorized():
    training = np.random.default_rng(0).random((40, 1, 8, 8))
    ratio, ratios = memorization_ratio(training[:10], training, return_ratios=True)
    assert ratio == 1.0
    np.testing.assert_array_equal(ratios, 0.0)


def test_far_samples_are_not_memorized():
    rng = np.random.default_rng(0)
    training = rng.random((40, 64))
    far = 10 + rng.random((15, 64))  # far from everything: d1 / d2 close to 1
    ratio, ratios = memorization_ratio(far, training, return_ratios=True)
    assert ratio == 0.0
    assert np.all(ratios > 0.9)


def test_threshold_edge_is_strict():
    training = np.array([[0.0], [4.0]])
    # d1 = 1, d2 = 3: exactly 1/3 is not below 1/3
    assert memorization_ratio(np.array([[1.0]]), training) == 0.0
    assert memorization_ratio(np.array([[0.99]]), training) == 1.0  # 0.99 / 3.01 < 1/3
    assert memorization_ratio(np.array([[1.0]]), training, threshold=0.34) == 1.0


def test_matches_brute_force_definition():
    rng = np.random.default_rng(1)
    training = rng.random((60, 1, 4, 4))
    generated = np.concatenate([training[:20] + 0.02 * rng.standard_normal((20, 1, 4, 4)),
                                rng.random((30, 1, 4, 4))])
    distances = np.sort(cdist(generated.reshape(50, -1), training.reshape(60, -1)), axis=1)
    expected = np.mean(distances[:, 0] / distances[:, 1] < 1 / 3)
    assert memorization_ratio(generated, training) == pytest.approx(expected)
    assert 0.2 < expected < 0.6  # the case mixes copies and fresh samples


def test_duplicated_training_image_copied_counts_as_memorized():
    training = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0]])
    ratio, ratios = memorization_ratio(np.array([[0.0, 0.0]]), training, return_ratios=True)
    assert ratio == 1.0 and ratios[0] == 0.0  # 0 / 0 taken as a copy


def test_feature_space_and_torch_inputs():
    training = np.zeros((3, 2))
    training[:, 1] = [0.0, 10.0, 20.0]
    training[:, 0] = [0.0, 100.0, -100.0]
    generated = np.array([[50.0, 0.5]])
    assert memorization_ratio(generated, training) == 0.0  # in pixels: halfway between two
    # in the space of the second feature only it is a near-copy of training[0]
    assert memorization_ratio(generated, training, space=lambda x: x[:, 1:]) == 1.0
    assert memorization_ratio(torch.from_numpy(training[:2]), torch.from_numpy(training)) == 1.0
    distances, indices = nearest_training_neighbors(generated, training, space=lambda x: x[:, 1:])
    np.testing.assert_allclose(distances, [[0.5, 9.5]])
    np.testing.assert_array_equal(indices, [[0, 1]])


@pytest.mark.parametrize(
    "generated, training, kwargs, match",
    [
        (np.zeros((5, 1, 8, 8)), np.zeros((5, 1, 16, 16)), {}, "same shape"),
        (np.zeros((5, 4)), np.zeros((1, 4)), {}, "at least 2 training"),
        (np.full((2, 4), np.nan), np.zeros((3, 4)), {}, "NaN"),
        (np.zeros((2, 4)), np.array([[0, 1, np.inf, 0]] * 3), {}, "NaN or infinite"),
        (np.zeros(4), np.zeros((3, 4)), {}, "at least 2 dimensions"),
        (np.zeros((2, 4)), np.zeros((3, 4)), {"threshold": 0}, "threshold"),
        (np.zeros((2, 4)), np.zeros((3, 4)), {"threshold": 1.5}, "threshold"),
        (np.zeros((2, 4)), np.zeros((3, 4)), {"space": lambda x: np.zeros((len(x) + 1, 2))}, "space must map"),
        (np.zeros((2, 4)), np.zeros((3, 4)), {"space": "features"}, "space"),
    ],
)
def test_memorization_ratio_errors(generated, training, kwargs, match):
    with pytest.raises(ValueError, match=match):
        memorization_ratio(generated, training, **kwargs)


# ---------------------------------------------------------------- turning point

STEPS = np.arange(0, 3000, 100)


def u_shape(steps, minimum=1800, depth=4e-8):
    return 0.3 + depth * (steps - minimum) ** 2


def test_noiseless_u_shape():
    result = detect_turning_point(STEPS, u_shape(STEPS))
    assert result.found and result.step == 1800 and result.index == 18
    assert result.confidence == 1.0 and result.rise > 0
    assert result.smoothed.shape == STEPS.shape


@pytest.mark.parametrize("seed", range(5))
def test_noisy_u_shape_is_found_near_its_minimum(seed):
    noisy = u_shape(STEPS) + 0.01 * np.random.default_rng(seed).standard_normal(STEPS.size)
    result = detect_turning_point(STEPS, noisy, random_state=seed)
    assert result.found and result.confidence > 0.95
    assert abs(result.step - 1800) <= 400
    assert result.step_interval[0] <= result.step <= result.step_interval[1]
    assert result.rise_over_noise > 2


def test_monotone_decreasing_has_no_turning_point():
    decay = 0.2 + 0.5 * np.exp(-STEPS / 800)
    clean = detect_turning_point(STEPS, decay)
    assert not clean.found and clean.step is None and clean.p_value == 1.0
    found = [detect_turning_point(STEPS, decay + 0.01 * np.random.default_rng(s).standard_normal(30),
                                  n_bootstrap=500).found for s in range(20)]
    assert sum(found) <= 1


def test_plateau_is_not_a_turning_point():
    plateau = np.maximum(0.5 - 2e-4 * STEPS, 0.3)  # a kink a Savitzky-Golay filter overshoots
    assert not detect_turning_point(STEPS, plateau).found


def test_false_alarm_rate_on_flat_noise_is_near_alpha():
    found = [detect_turning_point(STEPS, 0.3 + 0.01 * np.random.default_rng(s).standard_normal(30),
                                  n_bootstrap=300, random_state=s).found for s in range(150)]
    assert np.mean(found) < 0.12


def test_rising_from_the_start_and_short_series():
    rising = detect_turning_point(STEPS, 0.3 + 1e-4 * STEPS)
    assert rising.found and rising.step == 0
    short = detect_turning_point([1, 2, 3, 4], [0.5, 0.3, 0.4, 0.6])
    assert short.step == 2 and not short.found  # too few points to estimate the noise


def test_min_rise_ignores_small_upticks():
    uptick = u_shape(STEPS, depth=1e-9)  # a real but small rise: 0.3 -> 0.301
    assert detect_turning_point(STEPS, uptick).found
    assert not detect_turning_point(STEPS, uptick, min_rise=0.01).found
    assert detect_turning_point(STEPS, u_shape(STEPS), min_rise=0.1).found  # 0.3 -> 0.348


def test_turning_point_is_deterministic():
    noisy = u_shape(STEPS, depth=1e-8) + 0.01 * np.random.default_rng(0).standard_normal(30)
    first = detect_turning_point(STEPS, noisy, random_state=3)
    second = detect_turning_point(STEPS, noisy, random_state=3)
    assert first.p_value == second.p_value and first.step_interval == second.step_interval


@pytest.mark.parametrize(
    "steps, values, kwargs, match",
    [
        ([0, 1, 2], [0.1, 0.2], {}, "one length"),
        ([0, 1], [0.1, 0.2], {}, "at least 3"),
        ([0, 1, 2, 3], [0.1, np.nan, 0.2, 0.3], {}, "NaN"),
        ([0, 2, 1, 3], [0.1, 0.2, 0.2, 0.3], {}, "increasing"),
        ([0, 1, 2, 3, 4], [0.1, 0.2, 0.2, 0.3, 0.1], {"window": 4}, "odd"),
        ([0, 1, 2, 3, 4], [0.1, 0.2, 0.2, 0.3, 0.1], {"window": 7}, "at most"),
        ([0, 1, 2], [0.1, 0.2, 0.3], {"alpha": 1.0}, "alpha"),
    ],
)
def test_turning_point_errors(steps, values, kwargs, match):
    with pytest.raises(ValueError, match=match):
        detect_turning_point(steps, values, **kwargs)


# ---------------------------------------------------------------- retrieval by s and xi


def class_views(seed=0, n_per_class=25, n_classes=4, n_views=4, d=8):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    centres = 3 * rng.standard_normal((n_classes, d))
    content = centres[labels] + rng.standard_normal((labels.size, d))
    return content[:, None, :] + rng.standard_normal((labels.size, n_views, d)), labels


def test_retrieval_by_s_finds_the_class_and_by_xi_does_not():
    views, labels = class_views()
    scores = retrieval_accuracy(views, labels)
    assert scores["chance"] == pytest.approx(4 * 25 * 24 / (100 * 99))
    assert scores["invariant"] > 0.9
    assert abs(scores["residual"] - scores["chance"]) < 0.1


def test_retrieval_by_xi_finds_class_dependent_residuals():
    views, labels = class_views()
    rng = np.random.default_rng(5)
    signs = np.where(rng.random((views.shape[0], views.shape[1], 1)) < 0.5, -1.0, 1.0)
    directions = 10 * np.eye(8)[labels][:, None, :]
    views = views + signs * directions  # the view noise itself depends on the class
    assert retrieval_accuracy(views, labels, metric="cosine")["residual"] > 0.6


def test_retrieval_never_returns_the_query_image():
    views, labels = class_views(n_per_class=6)
    scores, neighbors = retrieval_accuracy(views, labels, n_neighbors=3, return_neighbors=True)
    own = np.arange(views.shape[0])
    assert neighbors["invariant"].shape == (24, 3)
    assert neighbors["residual"].shape == (24, 4, 3)
    assert not np.any(neighbors["invariant"] == own[:, None])
    assert not np.any(neighbors["residual"] == own[:, None, None])
    flat = retrieval_accuracy(views.reshape(24, -1), labels, n_views=4, n_neighbors=3)
    assert flat == scores


def test_retrieval_errors():
    views, labels = class_views(n_per_class=3)
    with pytest.raises(ValueError, match="labels must have shape"):
        retrieval_accuracy(views, labels[:-1])
    with pytest.raises(ValueError, match="exceeds"):
        retrieval_accuracy(views, labels, n_neighbors=12)
    with pytest.raises(ValueError, match="views"):
        retrieval_accuracy(views.reshape(12, -1), labels)


# ---------------------------------------------------------------- ICRMonitor


def test_monitor_is_deterministic(images, trained):
    monitor = ICRMonitor(images, sigma=0.3, n_views=3, random_state=4)
    first, second = monitor.evaluate(trained), monitor.evaluate(trained)
    for key in ("icr", "mean_snr", "trace_s", "trace_xi"):
        assert first[key] == second[key]
    again = ICRMonitor(images, sigma=0.3, n_views=3, random_state=4).evaluate(trained)
    assert again["icr"] == first["icr"]
    other = ICRMonitor(images, sigma=0.3, n_views=3, random_state=5).evaluate(trained)
    assert other["icr"] != first["icr"]
    assert 0 < first["icr"] <= 1
    assert first["trace_h"] == pytest.approx(first["trace_s"] + first["trace_xi"])
    assert first["icr"] == pytest.approx(1 / (1 + first["mean_snr"]))
    assert trained.training is False  # the monitor restores the model's mode


def test_monitor_as_training_callback(images):
    monitor = ICRMonitor(images, sigma=0.2, n_views=2)
    train_denoiser(images, n_steps=6, batch_size=8, net=tiny_net(), progress=False,
                   callback=monitor, callback_every=2)
    frame = monitor.history_
    assert isinstance(frame, pd.DataFrame)
    assert frame["step"].tolist() == [2, 4, 6]
    assert {"step", "icr", "trace_s", "trace_xi", "mean_snr", "seconds"} <= set(frame.columns)
    assert "memorization_ratio" not in frame
    assert frame["n_features"].eq(8).all() and frame["n_views"].eq(2).all()
    assert frame.equals(monitor.to_frame())


def test_monitor_in_a_plain_loop_with_an_extractor_template(images):
    template = FeatureExtractor(None, layer="down.1", sigma=0.5, n_views=3, random_state=1)
    monitor = ICRMonitor(images, template)
    net = tiny_net()
    for step in range(3):
        assert monitor(step, net) is False
    frame = monitor.history_
    assert len(frame) == 3 and frame["n_views"].eq(3).all() and frame["n_features"].eq(8).all()
    assert frame["icr"].nunique() == 1  # an unchanged model gives an unchanged ICR
    result = monitor.turning_point()
    assert not result.found


def test_monitor_memorization_with_a_custom_sampler(images, trained):
    copies = ICRMonitor(images, n_views=2, sampler=lambda model: images[:8])
    fresh = ICRMonitor(images, n_views=2, sampler=lambda model: np.full((8, 1, 8, 8), 0.5, np.float32)
                       + 0.01 * np.arange(8, dtype=np.float32)[:, None, None, None])
    assert copies.evaluate(trained)["memorization_ratio"] == 1.0
    assert copies.evaluate(trained)["nn_distance"] == 0.0
    assert fresh.evaluate(trained)["memorization_ratio"] == 0.0


def test_monitor_memorization_with_the_edm_sampler(images, trained):
    monitor = ICRMonitor(images, n_views=2, n_samples=6, sampler_steps=3, sampler_seed=2)
    monitor(1, trained)
    monitor(2, trained)
    frame = monitor.history_
    assert frame["memorization_ratio"].between(0, 1).all()
    assert frame["nn_distance"].iloc[0] == frame["nn_distance"].iloc[1]  # fixed sampler seed
    assert monitor.memorization_onset(level=1.01) is None


def test_monitor_from_checkpoints(images, trained, tmp_path):
    nets = {5: trained, 1: tiny_net(1), 3: tiny_net(3)}
    (tmp_path / "raw").mkdir()
    for step, net in nets.items():
        save_denoiser(net, tmp_path / "skicr" / f"ckpt_{step}.pt")
        torch.save({"ema": net.state_dict()}, tmp_path / "raw" / f"epoch{step}.pt")
    expected = {step: ICRMonitor(images, n_views=2).evaluate(net)["icr"] for step, net in nets.items()}

    from_files = ICRMonitor(images, n_views=2).from_checkpoints(tmp_path / "skicr").history_
    assert from_files["step"].tolist() == [1, 3, 5]  # sorted by the step in the name
    np.testing.assert_array_equal(from_files["icr"], [expected[s] for s in (1, 3, 5)])
    assert from_files["checkpoint"].str.endswith(".pt").all()

    raw = ICRMonitor(images, n_views=2).from_checkpoints(
        sorted((tmp_path / "raw").glob("*.pt")), model=tiny_net(9), steps=[10, 30, 50])
    np.testing.assert_array_equal(raw.history_["icr"], [expected[s] for s in (1, 3, 5)])
    assert raw.history_["step"].tolist() == [10, 30, 50]


def test_monitor_early_stopping_fires_after_icr_turns_up(images, monkeypatch):
    monitor = ICRMonitor(images, n_views=2, early_stopping="turning_point")
    trajectory = iter(u_shape(STEPS))
    monkeypatch.setattr(monitor, "evaluate", lambda model: {"icr": next(trajectory)})
    stops = [monitor(step, None) for step in STEPS]
    first_stop = stops.index(True)
    assert STEPS[first_stop] > 1800 and all(stops[first_stop:])
    assert monitor.stopped_at_ == STEPS[first_stop]


def test_monitor_early_stopping_warmup_skips_the_initial_transient(images, monkeypatch):
    # ICR of a fresh network: a dip at the first evaluations, then a long decrease
    trajectory = np.concatenate([[0.5, 0.3, 0.42, 0.44], 0.43 - 1e-5 * STEPS[4:]])

    def run(**kwargs):
        monitor = ICRMonitor(images, n_views=2, early_stopping="turning_point", **kwargs)
        values = iter(trajectory)
        monkeypatch.setattr(monitor, "evaluate", lambda model: {"icr": next(values)})
        return [monitor(step, None) for step in STEPS], monitor

    stops, _ = run()
    assert any(stops)  # fooled by the transient
    stops, monitor = run(early_stopping_warmup=400)
    assert not any(stops) and monitor.stopped_at_ is None
    assert not monitor.turning_point(start_step=400).found
    stops, _ = run(turning_point_params={"min_rise": 0.5})
    assert not any(stops)


def test_monitor_plot(images, trained):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monitor = ICRMonitor(images, n_views=2, sampler=lambda model: images[:4])
    for step in range(3):
        monitor(step, trained)
    axes = monitor.plot(title="tiny")
    assert len(axes) == 2 and axes[0].get_title() == "tiny"
    plt.close(axes[0].figure)


def test_monitor_errors(images, trained, tmp_path):
    with pytest.raises(ValueError, match="int random_state"):
        ICRMonitor(images, random_state=None)
    with pytest.raises(ValueError, match="int random_state"):
        ICRMonitor(images, FeatureExtractor(None, random_state=np.random.RandomState(0)))
    with pytest.raises(TypeError, match="FeatureExtractor"):
        ICRMonitor(images, extractor="mid")
    with pytest.raises(ValueError, match="n_views"):
        ICRMonitor(images, n_views=1)
    with pytest.raises(ValueError, match="sigma"):
        ICRMonitor(images, sigma=0)
    with pytest.raises(ValueError, match="pooling"):
        ICRMonitor(images, pooling="max")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ICRMonitor(images * 255)
    with pytest.raises(ValueError, match="at least 2 images"):
        ICRMonitor(images[:1])
    with pytest.raises(ValueError, match="training_images"):
        ICRMonitor(images, n_samples=4, training_images=images[:1])
    with pytest.raises(ValueError, match="memorization_threshold"):
        ICRMonitor(images, n_samples=4, memorization_threshold=2)
    with pytest.raises(ValueError, match="n_samples"):
        ICRMonitor(images, n_samples=-1)
    with pytest.raises(ValueError, match="unknown turning_point_params"):
        ICRMonitor(images, turning_point_params={"patience": 3})
    with pytest.raises(ValueError, match="alpha"):
        ICRMonitor(images, turning_point_params={"alpha": 2})
    with pytest.raises(ValueError, match="early_stopping_warmup"):
        ICRMonitor(images, early_stopping_warmup=-1)
    monitor = ICRMonitor(images, n_views=2)
    with pytest.raises(ValueError, match="no checkpoint files"):
        monitor.from_checkpoints(tmp_path)
    with pytest.raises(FileNotFoundError):
        monitor.from_checkpoints([tmp_path / "missing.pt"])
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="could not read"):
        monitor.from_checkpoints(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="at least 3 evaluations"):
        monitor.turning_point()
    monitor(0, trained)
    with pytest.raises(ValueError, match="unknown column"):
        monitor.turning_point(column="fid")
