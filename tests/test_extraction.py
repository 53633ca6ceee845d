"""FeatureExtractor: shapes, names, determinism, early exit, views, clone, pickling."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from skicr import FeatureExtractor
from skicr.views import ViewArray, infer_n_views
from skicr.extraction import DiTBackbone, RandomAffine, ViewAugmentation
from skicr.extraction._testing import TinyEDMNet, tiny_dit, tiny_unet2d




@pytest.fixture(scope="module")
def unet():
    return tiny_unet2d()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((7, 3, 16, 16), dtype=np.float32)


# ------------------------------------------------------------------ shapes and names
def test_shapes_names_and_view_layout(unet, images):
    extractor = FeatureExtractor(unet, sigma=0.5, n_views=3, random_state=0).fit(images)
    assert extractor.layer_ == "mid_block" and extractor.n_features_out_ == 16
    X = extractor.transform(images)
    assert isinstance(X, ViewArray) and X.dtype == np.float32
    assert X.shape == (7, 3 * 16) and X.n_views == 3 and infer_n_views(X) == 3
    views = extractor.transform_views(images)
    assert views.shape == (7, 3, 16)
    np.testing.assert_array_equal(X[:, 16:32], views[:, 1])  # views contiguous
    names = extractor.get_feature_names_out()
    assert len(names) == 48
    assert names[0] == "view0_mid_block_0" and names[17] == "view1_mid_block_1"


def test_pandas_output_carries_view_names(unet, images):
    extractor = FeatureExtractor(unet, n_views=2, random_state=0).set_output(transform="pandas")
    frame = extractor.fit_transform(images)
    assert isinstance(frame, pd.DataFrame) and frame.shape == (7, 32)
    assert list(frame.columns[:2]) == ["view0_mid_block_0", "view0_mid_block_1"]
    assert infer_n_views(frame) == 2


def test_single_view_and_input_layouts_agree(unet, images):
    extractor = FeatureExtractor(unet, n_views=1, random_state=0).fit(images)
    nchw = extractor.transform(images)
    nhwc = extractor.transform(images.transpose(0, 2, 3, 1))
    as_uint8 = (images * 255).round().astype(np.uint8)
    from_uint8 = extractor.transform(as_uint8)
    from_float = extractor.transform(as_uint8.astype(np.float32) / 255)
    from_tensor = extractor.transform(torch.from_numpy(images))
    np.testing.assert_array_equal(nchw, nhwc)
    np.testing.assert_allclose(from_uint8, from_float, atol=1e-6)
    np.testing.assert_array_equal(nchw, from_tensor)
    assert nchw.shape == (7, 16)


def test_grayscale_layouts():
    net = TinyEDMNet()
    gray = np.random.default_rng(2).random((5, 16, 16), dtype=np.float32)
    extractor = FeatureExtractor(net, random_state=0).fit(gray)
    np.testing.assert_array_equal(extractor.transform(gray), extractor.transform(gray[:, None]))
    np.testing.assert_array_equal(extractor.transform(gray), extractor.transform(gray[..., None]))


# ------------------------------------------------------------------ determinism
def test_same_random_state_same_features(unet, images):
    a = FeatureExtractor(unet, random_state=5).fit_transform(images)
    b = FeatureExtractor(unet, random_state=5).fit_transform(images)
    c = FeatureExtractor(unet, random_state=6).fit_transform(images)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    unseeded = FeatureExtractor(unet).fit(images)
    assert not np.allclose(unseeded.transform(images), unseeded.transform(images))


def test_views_do_not_depend_on_batch_size_or_other_images(unet, images):
    whole = FeatureExtractor(unet, batch_size=32, random_state=1).fit(images).transform_views(images)
    small = FeatureExtractor(unet, batch_size=2, random_state=1).fit(images).transform_views(images)
    head = FeatureExtractor(unet, random_state=1).fit(images).transform_views(images[:3])
    np.testing.assert_allclose(whole, small, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(whole[:3], head, rtol=1e-5, atol=1e-5)


def test_global_rng_is_untouched(unet, images):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    FeatureExtractor(unet, random_state=0).fit_transform(images)
    torch.testing.assert_close(torch.rand(3), expected)


# ------------------------------------------------------------------ early exit
class _Counter:
    def __init__(self, module):
        self.calls = 0
        module.register_forward_hook(self)

    def __call__(self, module, args, output):
        self.calls += 1


def test_early_exit_equals_full_forward_and_stops(images):
    unet = tiny_unet2d(seed=3)
    after_mid = _Counter(unet.up_blocks[0])
    early = FeatureExtractor(unet, random_state=0, early_exit=True).fit(images)
    full = FeatureExtractor(unet, random_state=0, early_exit=False).fit(images)
    after_mid.calls = 0
    early_views = early.transform_views(images)
    assert after_mid.calls == 0  # the up path never ran
    full_views = full.transform_views(images)
    assert after_mid.calls > 0
    np.testing.assert_array_equal(early_views, full_views)


def test_early_exit_matches_a_plain_hooked_forward_pass():
    """Independent check at sigma=0 (no noise): a hand-written full pass with a hook."""
    unet = tiny_unet2d(seed=4)
    rng = np.random.default_rng(4)
    images = rng.random((3, 3, 16, 16), dtype=np.float32)
    with pytest.warns(UserWarning, match="outside the VP schedule"):
        extractor = FeatureExtractor(unet, sigma=0.0, n_views=2, augment=None).fit(images)
    with pytest.warns(UserWarning, match="outside the VP schedule"):
        views = extractor.transform_views(images)

    captured = []
    handle = unet.mid_block.register_forward_hook(lambda m, a, out: captured.append(out))
    with torch.no_grad():
        unet(torch.from_numpy(images) * 2 - 1, torch.zeros(3, dtype=torch.long))
    handle.remove()
    expected = captured[0].mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(views[:, 0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(views[:, 1], expected, rtol=1e-5, atol=1e-6)


def test_early_exit_on_dit_tokens():
    dit = tiny_dit(num_layers=3, seed=1)
    images = np.random.default_rng(5).random((3, 4, 8, 8), dtype=np.float32)
    kwargs = dict(layer="transformer_blocks.0", random_state=0, pooling="flatten")
    early = FeatureExtractor(DiTBackbone(dit), **kwargs).fit(images).transform_views(images)
    full = FeatureExtractor(DiTBackbone(dit), early_exit=False, **kwargs).fit(images).transform_views(images)
    np.testing.assert_array_equal(early, full)
    assert early.shape == (3, 4, 16 * 16)  # 16 tokens of width 16


# ------------------------------------------------------------------ views and noise
def test_feature_variance_across_views_grows_with_sigma(unet, images):
    within = []
    for sigma in (0.05, 0.3, 1.5):
        views = FeatureExtractor(unet, sigma=sigma, n_views=6, augment=None, random_state=0).fit(
            images
        ).transform_views(images)
        within.append(views.var(axis=1, ddof=1).mean())
    assert within[0] < within[1] < within[2]


def test_augmentation_adds_variation(unet, images):
    def within(augment):
        views = FeatureExtractor(
            unet, sigma=0.02, n_views=4, augment=augment, random_state=0
        ).fit(images).transform_views(images)
        return views.var(axis=1, ddof=1).mean()

    assert within(RandomAffine(scale=(0.5, 1.0), rotation=30)) > 2 * within(None)


def test_random_affine_is_per_image_and_seeded():
    augment = RandomAffine(scale=(0.7, 1.0), rotation=20, translation=0.1, horizontal_flip=True)
    params = augment.sample_parameters(50, torch.Generator().manual_seed(0))
    again = augment.sample_parameters(50, torch.Generator().manual_seed(0))
    torch.testing.assert_close(params, again)
    assert params.shape == (50, 5)
    assert params[:, 0].min() >= 0.7 and params[:, 0].max() <= 1.0
    assert params[:, 1].abs().max() <= np.deg2rad(20) + 1e-6
    assert params[:, 0].std() > 0.05 and set(params[:, 4].tolist()) == {-1.0, 1.0}
    images = torch.rand(50, 3, 12, 12)
    out = augment.apply(images, params)
    assert out.shape == images.shape
    # identity parameters leave the image unchanged
    identity = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0]]).repeat(50, 1)
    torch.testing.assert_close(augment.apply(images, identity), images, atol=1e-5, rtol=0)
    # a flip with nothing else mirrors the image
    flip = torch.tensor([[1.0, 0.0, 0.0, 0.0, -1.0]])
    torch.testing.assert_close(augment.apply(images[:1], flip), images[:1].flip(-1), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="scale"):
        RandomAffine(scale=(1.0, 0.5))
    with pytest.raises(ValueError, match="padding_mode"):
        RandomAffine(padding_mode="wrap")


def test_callable_and_custom_view_augmentation(unet, images):
    calls = []

    def shift(batch, generator):
        calls.append(batch.shape[0])
        offsets = torch.rand(batch.shape[0], 1, 1, 1, generator=generator).to(batch.device)
        return (batch + 0.1 * offsets).clamp(0, 1)

    extractor = FeatureExtractor(unet, augment=shift, batch_size=4, n_views=2, random_state=0)
    a = extractor.fit(images).transform(images)
    np.testing.assert_array_equal(a, extractor.transform(images))
    assert calls[-2:] == [8, 6]  # one call per batch, all views together

    class Brighten(ViewAugmentation):
        def sample_parameters(self, n, generator):
            return torch.rand((n, 1), generator=generator)

        def apply(self, batch, parameters):
            return (batch * (0.5 + 0.5 * parameters[:, :, None, None])).clamp(0, 1)

    views = FeatureExtractor(unet, augment=Brighten(), random_state=0).fit(images).transform_views(images)
    assert views.shape == (7, 4, 16)


def test_kornia_augmentation_is_seeded():
    kornia = pytest.importorskip("kornia")
    unet = tiny_unet2d()
    images = np.random.default_rng(3).random((4, 3, 16, 16), dtype=np.float32)
    augment = kornia.augmentation.RandomAffine(degrees=20.0, scale=(0.7, 1.0), p=1.0)
    a = FeatureExtractor(unet, augment=augment, random_state=0).fit_transform(images)
    torch.manual_seed(999)  # the global RNG must not matter
    b = FeatureExtractor(unet, augment=augment, random_state=0).fit_transform(images)
    np.testing.assert_array_equal(a, b)


def test_bad_augmentation_output(unet, images):
    with pytest.raises(ValueError, match="augment must return"):
        FeatureExtractor(unet, augment=lambda x, g: x[:1]).fit(images).transform(images)


# ------------------------------------------------------------------ pooling
def test_pooling_options(unet, images):
    def fit_views(pooling):
        return FeatureExtractor(unet, pooling=pooling, n_views=2, random_state=0).fit(
            images
        ).transform_views(images)

    mean = fit_views("mean")
    np.testing.assert_array_equal(mean, fit_views("auto"))
    flat = fit_views("flatten")
    assert flat.shape == (7, 2, 16 * 8 * 8)
    np.testing.assert_allclose(flat.reshape(7, 2, 16, 64).mean(-1), mean, rtol=1e-5, atol=1e-6)
    amax = fit_views(lambda h: h.amax(dim=(2, 3)))
    assert amax.shape == (7, 2, 16) and (amax >= mean - 1e-6).all()
    with pytest.raises(ValueError, match="pooling callable"):
        fit_views(lambda h: h)


# ------------------------------------------------------------------ clone and pickle
def test_clone_shares_the_network(unet, images):
    extractor = FeatureExtractor(unet, sigma=0.3, random_state=0).set_output(transform="pandas")
    twin = clone(extractor).set_params(sigma=0.7)
    assert twin.backbone is unet
    assert twin.sigma == 0.7 and extractor.sigma == 0.3
    assert twin._sklearn_output_config == extractor._sklearn_output_config
    fitted = clone(extractor).fit(images)
    assert fitted.backbone_.module is unet
    adapter = DiTBackbone(tiny_dit())
    assert clone(FeatureExtractor(adapter)).backbone is adapter


def test_pickle_round_trip_uses_safe_weights(unet, images, monkeypatch):
    extractor = FeatureExtractor(unet, n_views=2, random_state=0).fit(images)
    expected = extractor.transform(images)
    payload = pickle.dumps(extractor)

    loads = []
    original = torch.load

    def recording_load(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    restored = pickle.loads(payload)
    assert loads == [True]  # the weights, once, through weights_only=True
    assert restored.backbone is restored.backbone_.module
    assert restored.backbone is not unet
    np.testing.assert_array_equal(restored.transform(images), expected)
    for name, tensor in unet.state_dict().items():
        torch.testing.assert_close(restored.backbone.state_dict()[name], tensor)
    # the weights are not pickled a second time as tensors with storage
    assert len(payload) < 1.5 * sum(t.numel() * 4 for t in unet.state_dict().values()) + 200_000


def test_pickle_unfitted_and_adapter_params(images):
    net = TinyEDMNet(in_channels=3)
    unfitted = pickle.loads(pickle.dumps(FeatureExtractor(net, random_state=0)))
    np.testing.assert_array_equal(
        unfitted.fit_transform(images), FeatureExtractor(net, random_state=0).fit_transform(images)
    )
    adapter_extractor = FeatureExtractor(DiTBackbone(tiny_dit()), random_state=0)
    small = np.random.default_rng(0).random((3, 4, 8, 8), dtype=np.float32)
    expected = adapter_extractor.fit_transform(small)
    restored = pickle.loads(pickle.dumps(adapter_extractor))
    assert restored.backbone is restored.backbone_
    np.testing.assert_array_equal(restored.transform(small), expected)


# ------------------------------------------------------------------ run modes
def test_training_mode_is_restored(images):
    net = TinyEDMNet(in_channels=3).train()
    FeatureExtractor(net, random_state=0).fit_transform(images)
    assert all(m.training for m in net.modules())


def test_bfloat16_autocast_is_close_to_float32(unet, images):
    full = FeatureExtractor(unet, random_state=0).fit_transform(images)
    bf16 = FeatureExtractor(unet, random_state=0, precision="bfloat16").fit_transform(images)
    assert bf16.dtype == np.float32
    assert np.abs(bf16 - full).max() < 0.1 * np.abs(full).max()


def test_progress_bar_writes_to_stderr(unet, images, capsys):
    FeatureExtractor(unet, progress=True, batch_size=3, random_state=0).fit_transform(images)
    assert "extracting mid_block" in capsys.readouterr().err
    FeatureExtractor(unet, progress=False, random_state=0).fit_transform(images)
    assert capsys.readouterr().err == ""


def test_device_parameter_moves_to_cpu(images):
    net = TinyEDMNet(in_channels=3)
    extractor = FeatureExtractor(net, device="cpu", random_state=0).fit(images)
    assert extractor.device_ == torch.device("cpu")


# ------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.zeros((3, 16, 16, 16, 3), np.float32), ValueError, "rank 5"),
        (np.zeros((16, 16), np.float32), ValueError, r"rank 2.*images\[None\]"),
        (np.zeros((3, 4, 16, 16), np.float32), ValueError, "3-channel"),
        (np.zeros((3, 16, 16), np.float32), ValueError, "single-channel"),
        (np.zeros((3, 1, 16, 16), np.float32), ValueError, "Repeat grayscale"),
        (np.full((3, 3, 16, 16), 255.0, np.float32), ValueError, r"\[0, 1\].*uint8"),
        (np.full((3, 3, 16, 16), -0.5, np.float32), ValueError, r"\(x \+ 1\) / 2"),
        (np.full((3, 3, 16, 16), np.nan, np.float32), ValueError, "NaN"),
        (np.zeros((3, 3, 16, 16), np.int64), TypeError, "dtype int64"),
        (np.zeros((0, 3, 16, 16), np.float32), ValueError, "empty"),
        ([np.zeros((3, 16, 16)), np.zeros((3, 8, 8))], TypeError, "numeric|different sizes"),
        ("images", ValueError, "rank 0"),
    ],
)
def test_bad_images_have_clear_errors(unet, images, bad, error, match):
    with pytest.raises(error, match=match):
        FeatureExtractor(unet).fit(bad)
    fitted = FeatureExtractor(unet, random_state=0).fit(images)
    with pytest.raises(error, match=match):
        fitted.transform(bad)


def test_nan_in_a_tensor_is_reported(unet):
    bad = torch.rand(2, 3, 16, 16)
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="1 NaN"):
        FeatureExtractor(unet).fit(bad)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"sigma": -1.0}, "sigma"),
        ({"n_views": 0}, "n_views"),
        ({"batch_size": 0}, "batch_size"),
        ({"pooling": "max"}, "pooling"),
        ({"augment": "strong"}, "augment"),
        ({"precision": "float16"}, "precision"),
    ],
)
def test_bad_parameters(unet, images, params, match):
    with pytest.raises(InvalidParameterError, match=match):
        FeatureExtractor(unet, **params).fit(images)


def test_transform_before_fit(unet, images):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        FeatureExtractor(unet).transform(images)


def test_edm_rejects_zero_sigma(images):
    with pytest.raises(ValueError, match="sigma > 0"):
        FeatureExtractor(TinyEDMNet(in_channels=3), sigma=0.0).fit(images)


def test_unusual_module_outputs():
    class TupleLayer(nn.Module):
        def forward(self, x):
            return x * 2, "extra"

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair = TupleLayer()
            self.empty = nn.Identity()

        def forward(self, x):
            h, _ = self.pair(x)
            return h

    from skicr.extraction import CallableBackbone

    backbone = CallableBackbone(Net(), lambda m, x, s: m(x), in_channels=1)
    gray = np.random.default_rng(0).random((2, 1, 4, 4), dtype=np.float32)
    views = FeatureExtractor(backbone, layer="pair", augment=None, random_state=0).fit(gray).transform_views(gray)
    assert views.shape == (2, 4, 1)


# ------------------------------------------------------------------ several layers per pass
def test_layer_views_equal_one_layer_at_a_time_and_stop_after_the_deepest(images):
    unet = tiny_unet2d(seed=3)
    layers = ["mid_block", "down_blocks.0", "up_blocks.0"]
    extractor = FeatureExtractor(unet, sigma=0.3, n_views=2, random_state=0, batch_size=3).fit(images)
    after_deepest = _Counter(unet.up_blocks[1])
    views = extractor.transform_layer_views(images, layers)
    assert list(views) == layers
    assert after_deepest.calls == 0  # early exit once up_blocks.0 ran
    for layer in layers:
        single = clone(extractor).set_params(layer=layer).fit(images).transform_views(images)
        np.testing.assert_array_equal(views[layer], single)


def test_layer_list_errors(unet, images):
    extractor = FeatureExtractor(unet, random_state=0).fit(images)
    with pytest.raises(ValueError, match="empty"):
        extractor.transform_layer_views(images, [])
    with pytest.raises(ValueError, match="repeated"):
        extractor.transform_layer_views(images, ["mid_block", "mid_block"])
    with pytest.raises((KeyError, ValueError), match="mid_blok"):
        extractor.transform_layer_views(images, ["mid_blok"])
