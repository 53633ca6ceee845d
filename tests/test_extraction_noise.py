"""Noise parameterisations: sigma round trips and what each adapter feeds its network."""

import numpy as np
import pytest
import torch
from torch import nn

from skicr.extraction import (
    CallableBackbone,
    DiTBackbone,
    EDMBackbone,
    FeatureExtractor,
    FlowBackbone,
    UNet2DBackbone,
)
from skicr.extraction._noise import (
    edm_c_noise_to_sigma,
    edm_input_scaling,
    flow_input_scale,
    flow_time_to_sigma,
    sigma_to_flow_time,
    sigma_to_vp_timestep,
    vp_input_scale,
    vp_sigmas,
    vp_timestep_to_sigma,
)
from skicr.extraction._testing import TinyEDMNet, TinySiT, tiny_dit, tiny_unet2d



SIGMAS = [0.02, 0.05, 0.2, 0.5, 1.0, 3.0, 20.0]


@pytest.fixture(scope="module")
def alphas_cumprod():
    from diffusers import DDPMScheduler

    return DDPMScheduler().alphas_cumprod.double().numpy()


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("sigma", SIGMAS)
def test_edm_round_trip(sigma):
    c_in, c_noise = edm_input_scaling(sigma, sigma_data=0.5)
    assert c_noise == pytest.approx(np.log(sigma) / 4)
    assert c_in == pytest.approx(1 / np.sqrt(sigma**2 + 0.25))
    assert edm_c_noise_to_sigma(c_noise) == pytest.approx(sigma, rel=1e-12)
    backbone = EDMBackbone(TinyEDMNet())
    assert backbone.sigma_at(backbone.c_noise(sigma)) == pytest.approx(sigma, rel=1e-12)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_vp_round_trip_is_within_one_grid_step(sigma, alphas_cumprod):
    timestep = sigma_to_vp_timestep(sigma, alphas_cumprod)
    back = vp_timestep_to_sigma(timestep, alphas_cumprod)
    grid = np.log(vp_sigmas(alphas_cumprod))
    step = np.max(np.abs(np.diff(grid[max(timestep - 1, 0):timestep + 2])))
    # nearest in log sigma: at most half the local grid spacing away
    assert abs(np.log(back) - np.log(sigma)) <= 0.5 * step + 1e-12
    # abar of the chosen timestep is the one nearest 1 / (1 + sigma^2) in log sigma
    abar = alphas_cumprod[timestep]
    assert np.sqrt((1 - abar) / abar) == pytest.approx(back)


def test_vp_round_trip_is_exact_on_the_grid(alphas_cumprod):
    for timestep in [0, 1, 10, 100, 500, 999]:
        sigma = vp_timestep_to_sigma(timestep, alphas_cumprod)
        assert sigma_to_vp_timestep(sigma, alphas_cumprod) == timestep


def test_vp_out_of_range_warns_and_clips(alphas_cumprod):
    with pytest.warns(UserWarning, match="outside the VP schedule"):
        assert sigma_to_vp_timestep(1e-4, alphas_cumprod) == 0
    with pytest.warns(UserWarning, match="outside the VP schedule"):
        assert sigma_to_vp_timestep(1e4, alphas_cumprod) == len(alphas_cumprod) - 1


def test_vp_rejects_bad_schedule_and_sigma(alphas_cumprod):
    with pytest.raises(ValueError, match="alphas_cumprod"):
        vp_sigmas(np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="sigma"):
        sigma_to_vp_timestep(-1.0, alphas_cumprod)
    with pytest.raises(ValueError, match="timestep"):
        vp_timestep_to_sigma(1000, alphas_cumprod)


@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("convention", ["noise_at_one", "data_at_one"])
def test_flow_round_trip(sigma, convention):
    t = sigma_to_flow_time(sigma, convention)
    expected = sigma / (1 + sigma)
    assert t == pytest.approx(expected if convention == "noise_at_one" else 1 - expected)
    assert flow_time_to_sigma(t, convention) == pytest.approx(sigma, rel=1e-9)
    backbone = FlowBackbone(TinySiT(), convention, time_scale=1000.0, class_label=10)
    assert backbone.sigma_at(backbone.time(sigma)) == pytest.approx(sigma, rel=1e-9)


def test_flow_rejects_bad_convention_and_time():
    with pytest.raises(ValueError, match="time_convention"):
        sigma_to_flow_time(0.5, "data_at_zero")
    with pytest.raises(ValueError, match="finite noise"):
        flow_time_to_sigma(1.0, "noise_at_one")
    with pytest.raises(ValueError, match="time_convention"):
        FlowBackbone(TinySiT(), "sideways")


def test_adapter_round_trips_through_the_backbone_objects():
    backbone = UNet2DBackbone(tiny_unet2d())
    for timestep in [3, 250, 900]:
        assert backbone.timestep(backbone.sigma_at(timestep)) == timestep
    dit = DiTBackbone(tiny_dit())
    assert dit.timestep(dit.sigma_at(42)) == 42


# ------------------------------------------------------------------ what the network receives
def _capture_inputs(module):
    seen = {}

    def pre_hook(mod, args, kwargs):
        seen["args"] = args
        seen["kwargs"] = kwargs

    module.register_forward_pre_hook(pre_hook, with_kwargs=True)
    return seen


def _x_ve(shape=(3, 3, 16, 16), seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_unet2d_receives_vp_scaled_input_and_nearest_timestep():
    unet = tiny_unet2d()
    seen = _capture_inputs(unet)
    backbone = UNet2DBackbone(unet)
    x, sigma = _x_ve(), 0.7
    with torch.no_grad():
        backbone.forward(x, sigma)
    sample, timesteps = seen["args"][:2]
    torch.testing.assert_close(sample, x / np.sqrt(1 + sigma**2))
    assert vp_input_scale(sigma) == pytest.approx(np.sqrt(1 / (1 + sigma**2)))
    assert timesteps.dtype == torch.long and timesteps.shape == (3,)
    assert int(timesteps[0]) == sigma_to_vp_timestep(sigma, backbone.alphas_cumprod)


def test_unet2d_custom_schedule_changes_the_timestep():
    betas = np.linspace(1e-4, 0.05, 200)
    alphas_cumprod = np.cumprod(1 - betas)
    backbone = UNet2DBackbone(tiny_unet2d(), scheduler=alphas_cumprod)
    np.testing.assert_allclose(backbone.alphas_cumprod, alphas_cumprod)
    assert backbone.timestep(backbone.sigma_at(57)) == 57


def test_dit_receives_vp_input_and_null_class():
    dit = tiny_dit(num_classes=10)
    seen = _capture_inputs(dit)
    backbone = DiTBackbone(dit)
    x, sigma = _x_ve((2, 4, 8, 8)), 1.3
    with torch.no_grad():
        backbone.forward(x, sigma)
    torch.testing.assert_close(seen["args"][0], x / np.sqrt(1 + sigma**2))
    kwargs = seen["kwargs"]
    assert int(kwargs["timestep"][0]) == backbone.timestep(sigma)
    assert kwargs["class_labels"].tolist() == [10, 10]  # the null class
    assert DiTBackbone(dit, class_label=3).class_label == 3
    with pytest.raises(ValueError, match="class_label"):
        DiTBackbone(dit, class_label=11)


def test_edm_raw_and_preconditioned_calls():
    net = TinyEDMNet()
    seen = _capture_inputs(net)
    x, sigma = _x_ve((2, 1, 16, 16)), 0.3
    with torch.no_grad():
        EDMBackbone(net).forward(x, sigma)
    c_in, c_noise = edm_input_scaling(sigma)
    torch.testing.assert_close(seen["args"][0], c_in * x)
    torch.testing.assert_close(seen["args"][1], torch.full((2,), c_noise))
    with torch.no_grad():
        EDMBackbone(net, call="preconditioned").forward(x, sigma)
    torch.testing.assert_close(seen["args"][0], x)
    torch.testing.assert_close(seen["args"][1], torch.full((2,), sigma))
    with pytest.raises(ValueError, match="sigma > 0"):
        EDMBackbone(net).check_sigma(0.0)


@pytest.mark.parametrize("convention", ["noise_at_one", "data_at_one"])
def test_flow_receives_scaled_input_and_its_time(convention):
    sit = TinySiT()
    seen = _capture_inputs(sit)
    x, sigma = _x_ve((2, 4, 8, 8)), 0.6
    with torch.no_grad():
        FlowBackbone(sit, convention, class_label=10).forward(x, sigma)
    x_t, t, y = seen["args"]
    torch.testing.assert_close(x_t, x / (1 + sigma))
    assert flow_input_scale(sigma) == pytest.approx(1 / (1 + sigma))
    t_noise = sigma / (1 + sigma)
    expected = t_noise if convention == "noise_at_one" else 1 - t_noise
    torch.testing.assert_close(t, torch.full((2,), expected))
    assert y.tolist() == [10, 10]


# ------------------------------------------------------------------ the noise the extractor draws
class _InputProbe(nn.Module):
    """The layer ``seen`` returns its input: the extractor then reports x0 + sigma * eps."""

    def __init__(self):
        super().__init__()
        self.seen = nn.Identity()

    def forward(self, x):
        return self.seen(x)


def _probe_extractor(**params):
    backbone = CallableBackbone(_InputProbe(), lambda module, x, sigma: module(x), in_channels=1)
    return FeatureExtractor(backbone, layer="seen", pooling="flatten", augment=None, **params)


@pytest.mark.parametrize("sigma", [0.1, 1.0, 5.0])
def test_extractor_noise_is_gaussian_with_std_sigma(sigma):
    images = np.random.default_rng(0).random((40, 1, 8, 8), dtype=np.float32)
    views = _probe_extractor(sigma=sigma, n_views=3, random_state=0).fit(images).transform_views(images)
    x0 = (2 * images - 1).reshape(40, 1, -1)
    eps = (views - x0) / sigma
    assert abs(eps.mean()) < 0.05
    assert eps.std() == pytest.approx(1.0, rel=0.05)
    # views of one image carry independent noise
    correlation = np.corrcoef(eps[:, 0].ravel(), eps[:, 1].ravel())[0, 1]
    assert abs(correlation) < 0.05


def test_extractor_common_random_numbers_across_sigma():
    images = np.random.default_rng(1).random((5, 1, 8, 8), dtype=np.float32)
    x0 = (2 * images - 1).reshape(5, 1, -1)
    eps = [
        (_probe_extractor(sigma=s, random_state=3).fit(images).transform_views(images) - x0) / s
        for s in (0.2, 2.0)
    ]
    np.testing.assert_allclose(eps[0], eps[1], atol=1e-4)
