"""ICRMonitor's early-stopping rules, held-out ICR, the verdict, and diffusers models."""

import numpy as np
import pytest

from skicr.monitoring import (
    DEFAULT_RULE,
    FALLBACK_RULE,
    STUDY_SETTINGS,
    ICRMonitor,
    StoppingVerdict,
    first_alarm,
    memorization_ratio,
)

STEPS = np.arange(0, 3000, 100)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((12, 1, 8, 8)).astype(np.float32)


def _tiny_unet():
    diffusers = pytest.importorskip("diffusers")
    import torch

    torch.manual_seed(0)
    return diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 16), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))


def test_default_rule_is_the_studys_choice(images):
    monitor = ICRMonitor(images, n_views=2, early_stopping=True, heldout_images=images[::-1])
    assert monitor.early_stopping_rule == DEFAULT_RULE == "heldout_gap"
    assert monitor.early_stopping_params == STUDY_SETTINGS[DEFAULT_RULE][0]
    assert monitor.early_stopping_warmup == STUDY_SETTINGS[DEFAULT_RULE][1]
    # without held-out images: the runner-up that needs none
    monitor = ICRMonitor(images, n_views=2, early_stopping=True)
    assert monitor.early_stopping_rule == FALLBACK_RULE == "expansion_split"
    # a named rule gets the study's settings unless given its own
    monitor = ICRMonitor(images, n_views=2, early_stopping="cusum")
    assert monitor.early_stopping_params == STUDY_SETTINGS["cusum"][0]
    monitor = ICRMonitor(images, n_views=2, early_stopping="cusum",
                         early_stopping_params={"threshold": 0.5}, early_stopping_warmup=7)
    assert monitor.early_stopping_params == {"threshold": 0.5}
    assert monitor.early_stopping_warmup == 7
    assert ICRMonitor(images, n_views=2).early_stopping_rule is None


def test_rule_errors_are_named(images):
    with pytest.raises(ValueError, match="early_stopping must be"):
        ICRMonitor(images, early_stopping="sometimes")
    with pytest.raises(ValueError, match="needs heldout_images"):
        ICRMonitor(images, early_stopping="heldout_gap")
    with pytest.raises(ValueError, match="unknown parameters"):
        ICRMonitor(images, early_stopping="cusum", early_stopping_params={"alpha": 0.1})
    with pytest.raises(ValueError, match="threshold"):
        ICRMonitor(images, early_stopping="cusum", early_stopping_params={"threshold": -1})
    with pytest.raises(ValueError, match="heldout_images"):
        ICRMonitor(images, heldout_images=images[:1])


def test_heldout_columns_equal_a_monitor_of_the_heldout_images(images, trained_tiny):
    held = images[::-1].copy()
    both = ICRMonitor(images, n_views=2, heldout_images=held)
    alone = ICRMonitor(held, n_views=2)
    both(0, trained_tiny)
    alone(0, trained_tiny)
    row, reference = both.history_.iloc[0], alone.history_.iloc[0]
    assert row["heldout_icr"] == pytest.approx(reference["icr"], rel=1e-12)
    assert row["heldout_trace_xi"] == pytest.approx(reference["trace_xi"], rel=1e-12)
    assert row["icr"] != pytest.approx(row["heldout_icr"])


@pytest.fixture(scope="module")
def trained_tiny():
    import torch

    from skicr.models import SmallUNet

    torch.manual_seed(0)
    return SmallUNet(channels=(4, 8), mid_channels=8).eval()


@pytest.mark.parametrize("rule", ["cusum", "turning_point", "page_hinkley", "mann_kendall"])
def test_named_rule_stops_where_the_detector_fires(images, monkeypatch, rule):
    icr = np.where(STEPS <= 1500, 0.40 - 2e-5 * STEPS, 0.37 * 1.01 ** ((STEPS - 1500) / 100))
    monitor = ICRMonitor(images, n_views=2, early_stopping=rule, early_stopping_warmup=0)
    values = iter(icr)
    monkeypatch.setattr(monitor, "evaluate", lambda model: {"icr": next(values)})
    stops = [monitor(step, None) for step in STEPS]
    expected = first_alarm(rule, monitor.history_, **monitor.early_stopping_params)
    assert expected is not None and 1500 < expected.step
    assert monitor.stopped_at_ == expected.step
    assert monitor.early_stopping_checkpoint_ == expected.checkpoint
    first = stops.index(True)
    assert STEPS[first] == expected.step and all(stops[first:])
    verdict = monitor.verdict()
    assert isinstance(verdict, StoppingVerdict)
    assert verdict.fired and verdict.step == expected.step
    assert verdict.checkpoint == expected.checkpoint
    assert f"checkpoint of step {expected.checkpoint}" in verdict.sentence()


def test_unet2d_model_is_monitored_with_the_training_schedule(images):
    diffusers = pytest.importorskip("diffusers")
    from skicr.extraction import UNet2DBackbone
    from skicr.monitoring import SchedulerSampler

    unet = _tiny_unet()
    schedule = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    monitor = ICRMonitor(images, n_views=2, n_samples=4, sampler_steps=3, sampler_seed=1,
                         scheduler=schedule)
    monitor(10, unet)
    row = monitor.history_.iloc[0]
    # the ICR of the adapter built with the training schedule (not the default linear one)
    explicit = ICRMonitor(images, n_views=2)
    explicit(10, UNet2DBackbone(unet, scheduler=schedule))
    default = ICRMonitor(images, n_views=2)
    default(10, unet)
    assert row["icr"] == pytest.approx(explicit.history_["icr"].iloc[0], rel=1e-12)
    assert row["icr"] != pytest.approx(default.history_["icr"].iloc[0], rel=1e-6)
    # the memorization samples: DDIM from the training schedule's config, 3 steps, seed 1
    samples = SchedulerSampler(diffusers.DDIMScheduler.from_config(schedule.config), 4,
                               (1, 8, 8), n_steps=3, seed=1)(unet)
    assert row["memorization_ratio"] == memorization_ratio(samples, images)
    np.testing.assert_array_equal(monitor.generate(unet), samples)


def test_unet2d_model_without_a_scheduler_samples_with_the_default_one(images):
    pytest.importorskip("diffusers")
    monitor = ICRMonitor(images, n_views=2, n_samples=3, sampler_steps=2)
    monitor(0, _tiny_unet())
    assert 0 <= monitor.history_["memorization_ratio"].iloc[0] <= 1
    with pytest.raises(TypeError, match="diffusers scheduler"):
        ICRMonitor(images, scheduler="ddpm")
