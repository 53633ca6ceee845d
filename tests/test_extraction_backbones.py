"""Backbone adapters: recognition, loading from local checkpoints, layers."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from skicr import FeatureExtractor, list_layers
from skicr.extraction import (
    Backbone,
    CallableBackbone,
    DiTBackbone,
    EDMBackbone,
    FlowBackbone,
    UNet2DBackbone,
    as_backbone,
    load_backbone,
)
from skicr.extraction._testing import TinyEDMNet, TinySiT, tiny_dit, tiny_unet2d, tiny_vae




def _images(n=4, channels=3, size=16, seed=0):
    return np.random.default_rng(seed).random((n, channels, size, size), dtype=np.float32)


# ------------------------------------------------------------------ recognition
def test_as_backbone_recognises_known_networks():
    assert isinstance(as_backbone(tiny_unet2d()), UNet2DBackbone)
    assert isinstance(as_backbone(tiny_dit()), DiTBackbone)
    assert isinstance(as_backbone(TinyEDMNet()), EDMBackbone)  # noise_parameterization = "edm"
    adapter = FlowBackbone(TinySiT(), "data_at_one", class_label=10)
    assert as_backbone(adapter) is adapter


def test_unrecognised_module_needs_an_adapter():
    with pytest.raises(TypeError, match="CallableBackbone"):
        as_backbone(nn.Sequential(nn.Conv2d(1, 2, 3)))
    with pytest.raises(TypeError, match="backbone must be"):
        as_backbone(42)
    with pytest.raises(TypeError, match="CallableBackbone"):
        FeatureExtractor(nn.Conv2d(1, 2, 3)).fit(_images(channels=1))


def test_adapter_type_checks():
    with pytest.raises(TypeError, match="UNet2DModel"):
        UNet2DBackbone(TinyEDMNet())
    with pytest.raises(TypeError, match="DiTTransformer2DModel"):
        DiTBackbone(tiny_unet2d())
    with pytest.raises(TypeError, match="forward_fn"):
        CallableBackbone(TinyEDMNet(), forward_fn=None)
    with pytest.raises(ValueError, match="call"):
        EDMBackbone(TinyEDMNet(), call="scaled")
    with pytest.raises(TypeError, match="module"):
        Backbone("not a module")


def test_default_layers_and_channels():
    assert UNet2DBackbone(tiny_unet2d()).default_layer == "mid_block"
    dit = DiTBackbone(tiny_dit(num_layers=4))
    assert dit.default_layer == "transformer_blocks.2"
    assert dit.in_channels == 4
    assert DiTBackbone(tiny_dit(), vae=tiny_vae()).in_channels == 3
    assert EDMBackbone(TinyEDMNet(in_channels=3)).default_layer == "mid"
    assert EDMBackbone(TinyEDMNet(in_channels=3)).in_channels == 3
    assert FlowBackbone(TinySiT(), class_label=10).default_layer == "blocks.1"


# ------------------------------------------------------------------ layers
def test_list_layers():
    unet = tiny_unet2d()
    names = list_layers(unet)
    assert "mid_block" in names and "down_blocks.0" in names and "" not in names
    assert names == [n for n, _ in unet.named_modules() if n]
    top = list_layers(unet, max_depth=1)
    assert "mid_block" in top and all("." not in n for n in top)
    assert "transformer_blocks.1" in list_layers(tiny_dit())
    # any module lists, even one the extractor cannot call by itself
    assert list_layers(nn.Sequential(nn.Linear(2, 2), nn.ReLU())) == ["0", "1"]
    with pytest.raises(ValueError, match="max_depth"):
        list_layers(unet, max_depth=0)


def test_unknown_layer_names_close_matches():
    with pytest.raises(ValueError, match=r"Unknown layer 'mid_blok'.*mid_block"):
        FeatureExtractor(tiny_unet2d(), layer="mid_blok").fit(_images())
    with pytest.raises(ValueError, match=r"transformer_blocks\.1"):
        FeatureExtractor(tiny_dit(), layer="transformer_block.1").fit(_images(channels=4, size=8))


def test_module_without_default_layer_asks_for_one():
    backbone = CallableBackbone(nn.Sequential(nn.Conv2d(1, 4, 3)), lambda m, x, s: m(x))
    with pytest.raises(ValueError, match="no default layer"):
        FeatureExtractor(backbone).fit(_images(channels=1))
    views = FeatureExtractor(backbone, layer="0", random_state=0).fit_transform(_images(channels=1))
    assert views.shape == (4, 4 * 4)


def test_layer_off_the_forward_path_is_reported():
    class WithUnused(TinyEDMNet):
        def __init__(self):
            super().__init__()
            self.unused = nn.Conv2d(1, 1, 1)

    with pytest.raises(RuntimeError, match="did not run"):
        FeatureExtractor(WithUnused(), layer="unused").fit(_images(channels=1))


# ------------------------------------------------------------------ every adapter extracts
@pytest.mark.parametrize(
    "make_backbone, images, width",
    [
        (lambda: tiny_unet2d(), _images(), 16),
        (lambda: DiTBackbone(tiny_dit()), _images(channels=4, size=8), 16),
        (lambda: DiTBackbone(tiny_dit(), vae=tiny_vae()), _images(), 16),
        (lambda: EDMBackbone(TinyEDMNet(in_channels=3)), _images(), 16),
        (lambda: EDMBackbone(TinyEDMNet(in_channels=3), call="preconditioned"), _images(), 16),
        (lambda: FlowBackbone(TinySiT(), "data_at_one", class_label=10, vae=tiny_vae()), _images(), 16),
        (lambda: CallableBackbone(TinyEDMNet(in_channels=3),
                                  lambda m, x, s: m(x, torch.full((len(x),), s))), _images(), 16),
    ],
    ids=["unet2d", "dit", "dit+vae", "edm", "edm-precond", "flow+vae", "callable"],
)
def test_every_adapter_extracts(make_backbone, images, width):
    extractor = FeatureExtractor(make_backbone(), sigma=0.5, n_views=3, random_state=0)
    views = extractor.fit(images).transform_views(images)
    assert views.shape == (len(images), 3, width)
    assert np.isfinite(views).all()
    assert np.ptp(views, axis=1).max() > 0  # views differ


def test_vae_latents_are_the_scaled_posterior_mean():
    vae = tiny_vae()
    backbone = DiTBackbone(tiny_dit(), vae=vae)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        latents = backbone.prepare(x)
        expected = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
    torch.testing.assert_close(latents, expected)
    assert latents.shape == (2, 4, 8, 8)


def test_class_conditional_unet_needs_a_label():
    from diffusers import UNet2DModel

    unet = UNet2DModel(
        sample_size=8, block_out_channels=(8, 8), down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2, layers_per_block=1, norm_num_groups=4,
        num_class_embeds=5,
    )
    with pytest.raises(ValueError, match="class_label"):
        UNet2DBackbone(unet)
    views = FeatureExtractor(UNet2DBackbone(unet, class_label=2), random_state=0).fit_transform(
        _images(size=8)
    )
    assert views.shape == (4, 4 * 8)


# ------------------------------------------------------------------ local checkpoints
def _save_scheduler(directory, beta_end):
    from diffusers import DDPMScheduler

    DDPMScheduler(num_train_timesteps=100, beta_end=beta_end).save_pretrained(directory)


def test_load_unet_from_model_folder(tmp_path):
    unet = tiny_unet2d()
    unet.save_pretrained(tmp_path)  # config.json + weights at the root (as google/ddpm-cifar10-32)
    _save_scheduler(tmp_path, beta_end=0.05)  # scheduler_config.json at the root
    backbone = load_backbone(tmp_path)
    assert isinstance(backbone, UNet2DBackbone)
    assert len(backbone.alphas_cumprod) == 100
    images = _images()
    from_path = FeatureExtractor(str(tmp_path), random_state=0).fit_transform(images)
    from_instance = FeatureExtractor(
        UNet2DBackbone(unet, scheduler=backbone.alphas_cumprod), random_state=0
    ).fit_transform(images)
    np.testing.assert_allclose(from_path, from_instance, rtol=1e-5, atol=1e-6)


def test_load_pipeline_folders(tmp_path):
    unet_dir = tmp_path / "ddpm"
    tiny_unet2d().save_pretrained(unet_dir / "unet")
    _save_scheduler(unet_dir / "scheduler", beta_end=0.02)
    (unet_dir / "model_index.json").write_text(json.dumps(
        {"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"],
         "scheduler": ["diffusers", "DDPMScheduler"]}
    ))
    backbone = load_backbone(unet_dir)
    assert isinstance(backbone, UNet2DBackbone) and len(backbone.alphas_cumprod) == 100

    dit_dir = tmp_path / "dit"
    tiny_dit().save_pretrained(dit_dir / "transformer")
    tiny_vae().save_pretrained(dit_dir / "vae")
    _save_scheduler(dit_dir / "scheduler", beta_end=0.02)
    (dit_dir / "model_index.json").write_text(json.dumps(
        {"_class_name": "DiTPipeline", "transformer": ["diffusers", "DiTTransformer2DModel"],
         "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DDPMScheduler"]}
    ))
    backbone = load_backbone(dit_dir)
    assert isinstance(backbone, DiTBackbone) and backbone.vae is not None
    assert backbone.in_channels == 3
    views = FeatureExtractor(backbone, random_state=0).fit(_images()).transform_views(_images())
    assert views.shape == (4, 4, 16)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
        load_backbone(tmp_path / "missing")
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(ValueError, match="not one of"):
        load_backbone(tmp_path)
    with pytest.raises(FileNotFoundError):
        UNet2DBackbone(tmp_path / "nothing-here")


# ------------------------------------------------------------------ skicr's own denoiser
def test_skicr_small_unet_integration():
    models = pytest.importorskip("skicr.models")
    net = models.SmallUNet(channels=(8, 16), mid_channels=16, emb_dim=16)
    backbone = as_backbone(net)
    assert isinstance(backbone, EDMBackbone) and backbone.default_layer == "mid"
    wrapped = as_backbone(models.EDMPrecond(net))
    assert wrapped.call == "preconditioned" and wrapped.default_layer == "net.mid"
    images = _images(n=3, channels=1)
    raw = FeatureExtractor(net, random_state=0).fit_transform(images)
    precond = FeatureExtractor(models.EDMPrecond(net), random_state=0).fit_transform(images)
    # EDMPrecond calls net(c_in * x, c_noise) itself: the bottleneck features agree
    np.testing.assert_allclose(raw, precond, rtol=1e-5, atol=1e-5)
    assert raw.shape == (3, 4 * 16)


def test_a_checkpoint_directory_is_loaded_once_for_all_clones(tmp_path):
    from sklearn.base import clone

    tiny_unet2d().save_pretrained(tmp_path)
    extractor = FeatureExtractor(str(tmp_path), random_state=0).fit(_images())
    twin = clone(extractor).set_params(sigma=0.9).fit(_images())
    assert twin.backbone_ is extractor.backbone_
