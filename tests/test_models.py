import math

import numpy as np
import pytest
import torch

from skicr.datasets import load_digits_images
from skicr.models import (
    PRETRAINED,
    EDMPrecond,
    SmallUNet,
    edm_loss,
    edm_preconditioning,
    edm_sampler,
    edm_sigma_steps,
    load_denoiser,
    load_pretrained,
    save_denoiser,
    train_denoiser,
)
from skicr.models._training import _random_shift
from skicr.models._pretrained import _WEIGHTS_DIR

TINY = dict(channels=(8, 8), mid_channels=8, emb_dim=16, n_frequencies=4, image_size=8)


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return SmallUNet(**TINY)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny models: extra threads only add contention on a shared 2-core runner
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits8():
    return load_digits_images(8, return_y=False)[:128]


# ----------------------------------------------------------------------------- network


def test_unet_shapes_and_named_blocks():
    net = SmallUNet()
    names = dict(net.named_modules())
    for name in ["noise_embed", "stem", "down.0", "down.1", "mid", "up.0", "up.1", "out"]:
        assert name in names
    n_params = sum(p.numel() for p in net.parameters())
    assert 300_000 < n_params < 1_000_000

    seen = {}
    hooks = [
        names[n].register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o.shape))
        for n in ["down.0", "down.1", "mid", "up.0", "up.1"]
    ]
    x = torch.randn(3, 1, 16, 16)
    out = net(x, torch.zeros(3))
    for h in hooks:
        h.remove()
    assert out.shape == x.shape
    assert seen == {
        "down.0": (3, 32, 16, 16),
        "down.1": (3, 64, 8, 8),
        "mid": (3, 96, 4, 4),
        "up.0": (3, 64, 8, 8),
        "up.1": (3, 32, 16, 16),
    }


def test_unet_uses_c_noise_and_accepts_a_scalar():
    net = tiny_net()
    torch.nn.init.normal_(net.out[-1].weight)  # the output conv starts at zero
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        a = net(x, torch.full((2,), -1.0))
        b = net(x, torch.full((2,), 1.0))
        c = net(x, torch.tensor(1.0))
    assert not torch.allclose(a, b)
    torch.testing.assert_close(b, c)


def test_unet_starts_at_zero_output():
    net = tiny_net()
    assert torch.count_nonzero(net(torch.randn(2, 1, 8, 8), torch.zeros(2))) == 0


@pytest.mark.parametrize(
    "x, c_noise, match",
    [
        (torch.zeros(2, 3, 8, 8), torch.zeros(2), r"\(batch, 1, H, W\)"),
        (torch.zeros(2, 1, 6, 8), torch.zeros(2), "multiples of 4"),
        (torch.zeros(2, 1, 8, 8), torch.zeros(3), "c_noise"),
    ],
)
def test_unet_bad_inputs(x, c_noise, match):
    with pytest.raises(ValueError, match=match):
        tiny_net()(x, c_noise)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 10}, "multiple of 4"),
        ({"channels": (8,)}, "channels"),
        ({"mid_channels": 0}, "mid_channels"),
    ],
)
def test_unet_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SmallUNet(**kwargs)


# ----------------------------------------------------------------------------- EDM


def test_edm_preconditioning_constants():
    c_skip, c_out, c_in, c_noise = edm_preconditioning(torch.tensor([0.5]))
    assert float(c_skip) == pytest.approx(0.5)
    assert float(c_out) == pytest.approx(0.25 / math.sqrt(0.5))
    assert float(c_in) == pytest.approx(1 / math.sqrt(0.5))
    assert float(c_noise) == pytest.approx(math.log(0.5) / 4)
    sigma = torch.tensor([0.002, 0.1, 3.0, 80.0])
    c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma)
    # EDM identities: c_skip = sigma_data^2 c_in^2, c_out = sigma sigma_data c_in
    torch.testing.assert_close(c_skip, 0.25 * c_in**2)
    torch.testing.assert_close(c_out, sigma * 0.5 * c_in)
    with pytest.raises(ValueError, match="sigma"):
        edm_preconditioning(torch.tensor([0.0, 1.0]))


class RecordingNet(torch.nn.Module):
    """F(x, c) = 2 x + c, recording its inputs."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.calls = []

    def forward(self, x, c_noise):
        self.calls.append((x.clone(), c_noise.clone()))
        return 2 * x + c_noise[:, None, None, None]


def test_edm_precond_calls_net_with_scaled_input():
    net = RecordingNet()
    x = torch.randn(2, 1, 4, 4)
    sigma = torch.tensor([0.2, 5.0])
    d = EDMPrecond(net)(x, sigma)
    (x_in, c_noise), = net.calls
    c_skip, c_out, c_in, c_expected = edm_preconditioning(sigma)
    assert c_noise.shape == (2,)
    torch.testing.assert_close(c_noise, c_expected)
    torch.testing.assert_close(x_in, c_in[:, None, None, None] * x)
    expected = c_skip[:, None, None, None] * x + c_out[:, None, None, None] * (
        2 * x_in + c_noise[:, None, None, None]
    )
    torch.testing.assert_close(d, expected)
    # a scalar sigma is broadcast
    assert EDMPrecond(net)(x, 0.5).shape == x.shape
    with pytest.raises(ValueError, match="sigma"):
        EDMPrecond(net)(x, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(TypeError):
        EDMPrecond("not a module")


def test_edm_loss_of_zero_net_matches_closed_form():
    # F = 0 gives D = c_skip x_noisy; for x = 0 the weighted error is
    # lambda * c_skip^2 sigma^2 eps^2 = sigma_data^2 / (sigma^2 + sigma_data^2) * eps^2
    net = tiny_net()
    x = torch.zeros(4000, 1, 8, 8)
    with torch.no_grad():
        loss = edm_loss(EDMPrecond(net), x, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    sigma = (torch.randn(4000, generator=g) * 1.2 - 1.2).exp()
    expected = (0.25 / (sigma**2 + 0.25)).mean()
    assert float(loss) == pytest.approx(float(expected), rel=0.02)
    with pytest.raises(TypeError, match="EDMPrecond"):
        edm_loss(net, x)


# ----------------------------------------------------------------------------- training


def test_training_reduces_the_loss(digits8):
    from skicr.models._training import images_to_tensor

    x = images_to_tensor(digits8)

    def fixed_loss(net):
        with torch.no_grad():
            return float(edm_loss(EDMPrecond(net), x, generator=torch.Generator().manual_seed(1)))

    before = fixed_loss(tiny_net())
    result = train_denoiser(
        digits8, n_steps=60, batch_size=32, lr=3e-3, ema_decay=0.9, seed=0,
        net=tiny_net(), progress=False,
    )
    assert fixed_loss(result.net) < 0.75 * before
    assert fixed_loss(result.ema_net) < 0.75 * before
    assert len(result.history["loss"]) == 60
    assert not result.ema_net.training and result.net.training


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_training_is_deterministic(digits8):
    kwargs = dict(n_steps=5, batch_size=16, progress=False)
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(100 + len(runs))  # the global RNG must not matter
        # default net: initialised from `seed`, built from the images' shape
        runs.append(train_denoiser(digits8[:32], seed=seed, **kwargs).ema_net)
    a, b, c = (_state(n) for n in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert runs[0].config["image_size"] == 8
    # same with a given net (same init): the data order and noise come from seed
    n1 = train_denoiser(digits8, seed=1, net=tiny_net(), **kwargs).net
    n2 = train_denoiser(digits8, seed=1, net=tiny_net(), **kwargs).net
    assert all(torch.equal(v, n2.state_dict()[k]) for k, v in n1.state_dict().items())


def test_callback_steps_and_early_stop(digits8):
    seen = []

    def callback(step, ema_net):
        seen.append((step, ema_net.training))

    train_denoiser(
        digits8, n_steps=7, batch_size=8, net=tiny_net(), callback=callback,
        callback_every=3, progress=False,
    )
    assert seen == [(3, False), (6, False), (7, False)]

    result = train_denoiser(
        digits8, n_steps=10, batch_size=8, net=tiny_net(), progress=False,
        callback=lambda step, net: step >= 4, callback_every=2,
    )
    assert result.history["step"] == [1, 2, 3, 4]
    assert result.history["stopped_early"] is True


def test_ema_decay_zero_copies_the_weights(digits8):
    result = train_denoiser(
        digits8, n_steps=3, batch_size=8, ema_decay=0.0, net=tiny_net(), progress=False
    )
    for (k, v), w in zip(result.ema_net.state_dict().items(), result.net.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)


def test_random_shift_moves_pixels_within_range():
    x = -torch.ones(50, 1, 8, 8)
    x[:, 0, 4, 4] = 1.0
    shifted = _random_shift(x, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape
    rows, cols = torch.nonzero(shifted[:, 0] > 0, as_tuple=True)[1:]
    assert len(rows) == 50  # nothing shifted out of the image, one bright pixel each
    assert rows.min() >= 2 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 6
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 5
    assert (shifted == -1).sum() == 50 * 63


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_steps": 0}, "n_steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"max_shift": -1}, "max_shift"),
        ({"callback": 3}, "callback"),
    ],
)
def test_train_bad_arguments(digits8, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        train_denoiser(digits8, progress=False, **kwargs)


@pytest.mark.parametrize(
    "images, match",
    [
        (np.full((4, 1, 8, 8), np.nan, dtype=np.float32), "NaN"),
        (np.full((4, 1, 8, 8), 3.0, dtype=np.float32), r"\[0, 1\]"),
        (np.zeros((4, 8), dtype=np.float32), "shape"),
        (np.zeros((0, 1, 8, 8), dtype=np.float32), "empty"),
    ],
)
def test_train_bad_images(images, match):
    with pytest.raises(ValueError, match=match):
        train_denoiser(images, n_steps=1, progress=False)


# ----------------------------------------------------------------------------- sampler


def test_sigma_steps():
    sigmas = edm_sigma_steps(18)
    assert sigmas.shape == (19,)
    assert float(sigmas[0]) == pytest.approx(80.0)
    assert float(sigmas[-2]) == pytest.approx(0.002)
    assert float(sigmas[-1]) == 0.0
    assert torch.all(sigmas[1:] < sigmas[:-1])
    with pytest.raises(ValueError, match="n_steps"):
        edm_sigma_steps(1)
    with pytest.raises(ValueError, match="sigma_min"):
        edm_sigma_steps(5, sigma_min=1.0, sigma_max=0.5)


class GaussianOptimalNet(torch.nn.Module):
    """Raw net whose EDM denoiser is optimal for data ~ N(0, s^2 I): D = s^2 / (s^2 + sigma^2) x."""

    def __init__(self, s):
        super().__init__()
        self.s = s
        self.in_channels, self.image_size = 1, 4
        self.dummy = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x_in, c_noise):
        sigma = (4 * c_noise).exp()[:, None, None, None]
        c_skip, c_out, c_in, _ = edm_preconditioning(sigma)
        x = x_in / c_in
        return (self.s**2 / (self.s**2 + sigma**2) * x - c_skip * x) / c_out


def test_heun_sampler_solves_the_ode_of_gaussian_data():
    # probability-flow ODE for N(0, s^2): x(0) = x(T) * s / sqrt(s^2 + T^2);
    # Heun's error shrinks with the number of steps (about 6% at 18, 0.2% at 100)
    s = 0.3
    latents = torch.randn((6, 1, 4, 4), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    exact = (latents * 80 * s / math.sqrt(s**2 + 80**2)).numpy()
    errors = {}
    torch.set_default_dtype(torch.float64)
    try:
        for n_steps in (18, 100):
            out = edm_sampler(GaussianOptimalNet(s), 6, n_steps=n_steps, seed=5, progress=False)
            inside = (exact > -0.95) & (exact < 0.95)  # away from the clipping at [0, 1]
            errors[n_steps] = np.abs(2 * out - 1 - exact)[inside].max()
    finally:
        torch.set_default_dtype(torch.float32)
    assert errors[100] < 2e-3
    assert errors[100] < errors[18] < 0.1


def test_sampler_shape_range_and_seed():
    net = tiny_net()
    torch.nn.init.normal_(net.out[-1].weight, std=0.1)
    kwargs = dict(n_steps=3, progress=False)
    a = edm_sampler(net, 5, seed=0, batch_size=2, **kwargs)
    b = edm_sampler(net, 5, seed=0, batch_size=5, **kwargs)
    c = edm_sampler(net, 5, seed=1, **kwargs)
    assert a.shape == (5, 1, 8, 8) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(a, c)
    g = torch.Generator().manual_seed(0)
    np.testing.assert_allclose(edm_sampler(EDMPrecond(net), 5, seed=g, **kwargs), b, atol=1e-5)
    assert net.training  # the sampler restores the mode it found


def test_sampler_bad_arguments():
    with pytest.raises(ValueError, match="n_samples"):
        edm_sampler(tiny_net(), 0, progress=False)
    with pytest.raises(ValueError, match="image_shape"):
        edm_sampler(RecordingNet(), 2, progress=False)
    with pytest.raises(ValueError, match="seed"):
        edm_sampler(tiny_net(), 2, seed=-1, progress=False)


# ----------------------------------------------------------------------------- weights


def test_load_pretrained_digits():
    net, meta = load_pretrained("digits", return_metadata=True)
    assert isinstance(net, SmallUNet) and not net.training
    assert (_WEIGHTS_DIR / "digits.pt").stat().st_size < 4e6
    assert meta["command"].startswith("python -m skicr.models.train")
    out = {}
    net.mid.register_forward_hook(lambda m, i, o: out.setdefault("mid", o))
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        net(x, torch.zeros(2))
    assert out["mid"].shape[0] == 2 and out["mid"].shape[2:] == (4, 4)


def test_pretrained_digits_denoises():
    images = load_digits_images(return_y=False)[::30]
    x = torch.from_numpy(images) * 2 - 1
    g = torch.Generator().manual_seed(0)
    denoiser = EDMPrecond(load_pretrained("digits"))
    variance = float((x - x.mean(0)).square().mean())  # MSE of predicting the mean image
    # bounds: the noisy input itself scores sigma^2, the mean image `variance`;
    # the shipped weights score about 0.11 sigma^2, 0.05 sigma^2 and 0.33 variance
    for sigma, bound in [(0.1, 0.2 * 0.1**2), (0.5, 0.2 * 0.5**2), (2.0, 0.5 * variance)]:
        noisy = x + sigma * torch.randn(x.shape, generator=g)
        with torch.no_grad():
            mse = float((denoiser(noisy, sigma) - x).square().mean())
        assert mse < bound, (sigma, mse, bound)


def test_load_pretrained_unknown_name():
    with pytest.raises(ValueError, match="available: \\['digits'\\]"):
        load_pretrained("cifar10")
    assert "digits" in PRETRAINED


def test_save_load_roundtrip(tmp_path):
    net = tiny_net()
    torch.nn.init.normal_(net.out[-1].weight)
    path = save_denoiser(net, tmp_path / "sub" / "w.pt", metadata={"seed": 3})
    loaded, meta = load_denoiser(path, return_metadata=True)
    assert meta == {"seed": 3} and loaded.config == net.config
    for k, v in net.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    half = load_denoiser(save_denoiser(net, tmp_path / "h.pt", dtype=torch.float16))
    assert next(half.parameters()).dtype == torch.float32
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(half(x, torch.zeros(2)), net(x, torch.zeros(2)), atol=5e-2, rtol=5e-2)


def test_load_denoiser_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_denoiser(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="could not read"):
        load_denoiser(tmp_path / "junk.pt")
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a skicr denoiser"):
        load_denoiser(tmp_path / "other.pt")
    with pytest.raises(TypeError, match="SmallUNet"):
        save_denoiser(RecordingNet(), tmp_path / "x.pt")
    with pytest.raises(TypeError, match="metadata"):
        save_denoiser(tiny_net(), tmp_path / "x.pt", metadata={"array": np.zeros(2)})


def test_save_denoiser_makes_metadata_plain(tmp_path):
    meta = {"version": torch.__version__, "loss": np.float64(0.5), "steps": np.int64(3), "t": (1, 2)}
    path = save_denoiser(tiny_net(), tmp_path / "w.pt", metadata=meta)
    _, loaded = load_denoiser(path, return_metadata=True)  # weights_only=True
    assert loaded == {"version": str(torch.__version__), "loss": 0.5, "steps": 3, "t": [1, 2]}
    assert type(loaded["version"]) is str


# ----------------------------------------------------------------------------- CLI


def test_train_cli_end_to_end(tmp_path, capsys):
    from skicr.models.train import main

    out = tmp_path / "w.pt"
    code = main([
        "--steps", "4", "--batch-size", "8", "--n-images", "32", "--size", "8",
        "--channels", "8", "8", "--mid-channels", "8", "--eval-every", "2",
        "--threads", "1", "--no-progress", "--out", str(out),
    ])
    assert code == 0
    net, meta = load_denoiser(out, return_metadata=True)
    assert net.config["image_size"] == 8
    assert [p["step"] for p in meta["ema_eval_curve"]] == [2, 4]
    assert meta["seed"] == 0 and "--steps 4" in meta["command"]
    assert "saved" in capsys.readouterr().out


def test_train_cli_bad_arguments(tmp_path):
    from skicr.models.train import main

    with pytest.raises(SystemExit) as exc:
        main(["--threads", "0", "--out", str(tmp_path / "w.pt")])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["--steps", "0", "--no-progress", "--out", str(tmp_path / "w.pt")])
    assert exc.value.code == 2
