"""SmallDiT, the VP-epsilon and flow-matching losses, and the zoo checkpoint format."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from skicr import FeatureExtractor
from skicr.extraction import EDMBackbone, FlowBackbone, UNet2DBackbone
from skicr.models import (
    SmallDiT,
    SmallUNet,
    ddpm_alphas_cumprod,
    flow_matching_loss,
    load_checkpoint,
    save_checkpoint,
    vp_epsilon_loss,
)

ZOO = Path(__file__).resolve().parents[1] / "benchmarks" / "zoo" / "weights"


def test_dit_shapes_tokens_and_zero_init():
    net = SmallDiT(in_channels=3, image_size=8, patch_size=2, width=32, depth=3, n_heads=4)
    x = torch.randn(2, 3, 8, 8)
    out = net(x, torch.rand(2))
    assert out.shape == x.shape
    assert torch.all(out == 0)  # adaLN-Zero and a zero final layer: F = 0 at initialisation
    captured = {}
    net.blocks[1].register_forward_hook(lambda m, i, o: captured.setdefault("tokens", o))
    net(x, 0.5)
    assert captured["tokens"].shape == (2, 16, 32)
    assert SmallDiT(**net.config).config == net.config


def test_dit_unpatchify_inverts_patchify():
    # with the final linear set to copy each token's patch pixels back, the output is the
    # input: checks that patches return to the places they came from
    net = SmallDiT(in_channels=2, image_size=4, patch_size=2, width=8, depth=1, n_heads=2)
    x = torch.randn(3, 2, 4, 4)
    patches = x.reshape(3, 2, 2, 2, 2, 2).permute(0, 2, 4, 3, 5, 1).reshape(3, 4, 8)
    with torch.no_grad():
        net.final.linear.bias.zero_()
    net.final.forward = lambda h, emb: patches
    torch.testing.assert_close(net(x, 0.1), x)


@pytest.mark.parametrize("kwargs, match", [
    ({"image_size": 10, "patch_size": 4}, "multiple of patch_size"),
    ({"width": 30, "n_heads": 4}, "multiple of n_heads"),
    ({"depth": 0}, "depth"),
])
def test_dit_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SmallDiT(**kwargs)


def test_ddpm_schedule_matches_diffusers():
    from diffusers import DDPMScheduler

    np.testing.assert_allclose(ddpm_alphas_cumprod(), DDPMScheduler().alphas_cumprod.numpy(),
                               rtol=1e-5)


def test_vp_loss_is_zero_for_the_oracle_and_positive_otherwise():
    torch.manual_seed(0)
    x0 = torch.rand(6, 1, 4, 4, dtype=torch.float64) * 2 - 1
    abar = torch.as_tensor(ddpm_alphas_cumprod())

    def oracle(x_t, t):  # the noise that produced x_t from x0
        a = abar[t][:, None, None, None]
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    g = torch.Generator().manual_seed(1)
    assert vp_epsilon_loss(oracle, x0, ddpm_alphas_cumprod(), generator=g).item() < 1e-16
    zero = vp_epsilon_loss(lambda x_t, t: torch.zeros_like(x_t), x0, ddpm_alphas_cumprod(),
                           generator=torch.Generator().manual_seed(1))
    assert 0.5 < zero.item() < 1.5  # E|eps|^2 = 1


def test_flow_loss_is_zero_for_the_oracle():
    x0 = torch.rand(5, 2, 4, 4, dtype=torch.float64) * 2 - 1

    def oracle(x_t, t):  # velocity eps - x0, from x_t = (1 - t) x0 + t eps
        t = t[:, None, None, None]
        return (x_t - (1 - t) * x0) / t - x0

    loss = flow_matching_loss(oracle, x0, generator=torch.Generator().manual_seed(0))
    assert loss.item() < 1e-12
    assert flow_matching_loss(lambda x, t: torch.zeros_like(x), x0).item() > 0.3


def _tiny_unet2d():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
                       add_attention=False).eval()


@pytest.mark.parametrize("kind", ["unet_edm", "dit_flow", "unet2d_vp"])
def test_checkpoint_round_trip_gives_the_right_adapter_and_the_same_network(tmp_path, kind):
    torch.manual_seed(0)
    if kind == "unet_edm":
        net, param, adapter = SmallUNet(channels=(8, 16), mid_channels=16, emb_dim=16), "edm", EDMBackbone
        call = lambda m, x: m(x, torch.full((x.shape[0],), 0.1))
    elif kind == "dit_flow":
        net, param, adapter = SmallDiT(width=16, depth=2, n_heads=2), "flow", FlowBackbone
        for p in net.parameters():  # leave the zero init, so the outputs are not all 0
            torch.nn.init.normal_(p, std=0.1)
        call = lambda m, x: m(x, torch.full((x.shape[0],), 0.3))
    else:
        net, param, adapter = _tiny_unet2d(), "vp_epsilon", UNet2DBackbone
        call = lambda m, x: m(x, torch.full((x.shape[0],), 10), return_dict=False)[0]
    schedule = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02}
    path = save_checkpoint(net, tmp_path / "m.pt", parameterization=param, schedule=schedule,
                           metadata={"steps": 3}, dtype=torch.float32)
    backbone, metadata = load_checkpoint(path, return_metadata=True)
    assert isinstance(backbone, adapter)
    assert metadata["steps"] == 3 and metadata["parameterization"] == param
    x = torch.randn(2, 1, 16 if kind != "unet2d_vp" else 8, 16 if kind != "unet2d_vp" else 8)
    with torch.no_grad():
        torch.testing.assert_close(call(backbone.module, x), call(net.eval(), x))
    if kind == "unet2d_vp":
        np.testing.assert_allclose(backbone.alphas_cumprod, ddpm_alphas_cumprod(), rtol=1e-6)
    # float16 storage halves the file and loads back as float32
    small = save_checkpoint(net, tmp_path / "h.pt", parameterization=param, schedule=schedule)
    assert small.stat().st_size < 0.7 * path.stat().st_size
    assert load_checkpoint(small).dtype == torch.float32


def test_checkpoint_errors(tmp_path):
    net = SmallUNet(channels=(8, 16), mid_channels=16, emb_dim=16)
    with pytest.raises(ValueError, match="parameterization"):
        save_checkpoint(net, tmp_path / "a.pt", parameterization="ddim")
    with pytest.raises(ValueError, match="schedule"):
        save_checkpoint(_tiny_unet2d(), tmp_path / "a.pt", parameterization="vp_epsilon")
    with pytest.raises(TypeError, match="SmallUNet, a SmallDiT"):
        save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "a.pt", parameterization="edm")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"format": "other"}, tmp_path / "o.pt")
    with pytest.raises(ValueError, match="not a skicr checkpoint"):
        load_checkpoint(tmp_path / "o.pt")


def test_shipped_digits_weights_load_as_an_edm_checkpoint():
    import skicr.models

    weights = Path(skicr.models.__file__).parent / "weights" / "digits.pt"
    backbone = load_checkpoint(weights)
    assert isinstance(backbone, EDMBackbone) and backbone.default_layer == "mid"


ZOO_FILES = sorted(ZOO.glob("*.pt"))


@pytest.mark.skipif(not ZOO_FILES, reason="no zoo weights in benchmarks/zoo/weights")
def test_every_zoo_checkpoint_feeds_the_extractor_without_retraining():
    for path in ZOO_FILES:
        backbone, metadata = load_checkpoint(path, return_metadata=True)
        record = json.loads(path.with_suffix(".json").read_text())
        assert record["parameterization"] == metadata["parameterization"]
        channels = backbone.in_channels
        size = 16 if record["data"] == "digits" else 24
        images = np.random.default_rng(0).uniform(size=(3, channels, size, size)).astype(np.float32)
        views = FeatureExtractor(backbone, sigma=0.2, n_views=2, random_state=0).fit(
            images).transform_views(images)
        assert views.shape[:2] == (3, 2) and np.all(np.isfinite(views)), path.name


def test_checkpoint_content_hash_catches_an_edited_file(tmp_path):
    net = SmallDiT(width=16, depth=1, n_heads=2)
    path = save_checkpoint(net, tmp_path / "m.pt", parameterization="flow")
    payload = torch.load(path, weights_only=True)
    assert "content_hash" in payload
    payload["state_dict"]["patch_embed.bias"] += 1  # one weight changed after saving
    torch.save(payload, path)
    with pytest.raises(ValueError, match="corrupted or was edited"):
        load_checkpoint(path)
