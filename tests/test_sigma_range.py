"""Noise levels out of float32's reach are refused with one clear message, wherever they enter (issue 14)."""

import math

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

from skicr import FeatureExtractor, NoiseLevelSelector, cli
from skicr.extraction import CallableBackbone
from skicr.extraction._noise import edm_input_scaling, vp_input_scale
from skicr.extraction._testing import tiny_unet2d
from skicr.models import EDMPrecond, edm_preconditioning
from skicr.recipes import parse_sigmas

OUT_OF_RANGE = [1e300, 1e19, 1e-19, 1e-300, 5e-324]
pytestmark = pytest.mark.filterwarnings("ignore:sigma=.*outside the VP schedule:UserWarning")


class Identity(torch.nn.Module):
    def forward(self, x, c_noise):
        return x


@pytest.fixture(scope="module")
def unet():
    return tiny_unet2d()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32)


@pytest.mark.parametrize("sigma", OUT_OF_RANGE)
@pytest.mark.parametrize("function", [edm_input_scaling, edm_preconditioning, vp_input_scale])
def test_coefficients_refuse_out_of_range_sigma(function, sigma):
    with pytest.raises(ValueError, match=r"must lie in \[1e-18, 1e\+18\]"):
        function(sigma)


def test_coefficients_are_exact_at_the_ends_of_the_range():
    # hypot: sigma**2 never formed in float64 (1e300 used to overflow there)
    c_in, c_noise = edm_input_scaling(1e18)
    assert c_in == pytest.approx(1e-18, rel=1e-12)
    assert c_noise == pytest.approx(math.log(1e18) / 4, rel=1e-12)
    assert edm_input_scaling(1e-18)[0] == pytest.approx(2.0, rel=1e-12)
    assert vp_input_scale(1e18) == pytest.approx(1e-18, rel=1e-12)
    for sigma in (1e-18, 1e18):  # float32 tensors: all four coefficients finite
        coefficients = edm_preconditioning(sigma)
        assert all(bool(torch.isfinite(c)) for c in coefficients)
        assert float(coefficients[2]) > 0


def test_a_tensor_with_one_value_out_of_range_is_refused_before_the_float32_cast():
    with pytest.raises(ValueError, match="got 1e\\+30"):
        edm_preconditioning(torch.tensor([0.5, 1e30], dtype=torch.float64))
    with pytest.raises(ValueError, match="finite"):
        edm_preconditioning(torch.tensor([0.5, float("nan")]))
    net = EDMPrecond(Identity())
    with pytest.raises(ValueError, match="must lie in"):
        net(torch.zeros(2, 1, 4, 4), 1e300)


@pytest.mark.parametrize("sigma", OUT_OF_RANGE)
def test_feature_extractor_refuses_out_of_range_sigma(images, unet, sigma):
    with pytest.raises(InvalidParameterError, match=r"range \[1e-18, 1e\+18\]"):
        FeatureExtractor(unet, sigma=sigma, n_views=2).fit(images)


@pytest.mark.parametrize("sigma", [0.0, 1e-18, 1e18])
def test_feature_extractor_runs_at_the_ends_of_the_range(images, unet, sigma):
    features = FeatureExtractor(unet, sigma=sigma, n_views=2, random_state=0).fit_transform(images)
    assert np.isfinite(features).all()


def test_a_network_that_overflows_is_named_not_passed_on_as_nan(images):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3))
    backbone = CallableBackbone(net, lambda module, x, sigma: module(x * x * x))  # unscaled: x**3
    extractor = FeatureExtractor(backbone, layer="2", sigma=1e18, n_views=2, random_state=0)
    with pytest.raises(ValueError, match="produced NaN or infinite features at layer '2'"):
        extractor.fit_transform(images)
    assert np.isfinite(extractor.set_params(sigma=0.5).fit_transform(images)).all()


def test_selector_grid_refuses_out_of_range_sigmas(images, unet):
    selector = NoiseLevelSelector(FeatureExtractor(unet, n_views=2), sigmas=[0.1, 1e300], cv=2)
    with pytest.raises(ValueError, match=r"sigmas must lie in .*got \[1e\+300\]"):
        selector.fit(images)


@pytest.mark.parametrize("text", ["1e300", "0.1,1e19", "1e-30:1:3", "0.1:1e300:4"])
def test_parse_sigmas_refuses_out_of_range(text):
    with pytest.raises(ValueError, match="must lie in"):
        parse_sigmas(text)


@pytest.mark.parametrize("args", [
    ["scan", "--sigmas", "1e300"],
    ["scan", "--sigmas", "1e-30:1:3"],
    ["track", "--sigma", "1e300"],
])
def test_cli_sigma_out_of_range_is_exit_2_and_one_line(args, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main([*args, "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines()
             if line.strip() and not line.startswith(("usage:", " "))]
    assert len(lines) == 1 and "must lie in [1e-18, 1e+18]" in lines[0], err
    assert not (tmp_path / "out").exists()
