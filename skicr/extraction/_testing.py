"""Tiny randomly initialised backbones for tests and benchmarks (nothing downloaded).

They take the same code paths as pretrained checkpoints of their kind.
"""

import torch
from torch import nn

__all__ = [
    "TinyEDMNet",
    "TinySiT",
    "tiny_unet2d",
    "ddpm_cifar10_unet2d",
    "tiny_dit",
    "tiny_vae",
]


class TinyEDMNet(nn.Module):
    """A small EDM raw network ``F(c_in * x, c_noise)`` with a bottleneck ``mid``.

    Parameters
    ----------
    in_channels : int, default=1
    width : int, default=8
    seed : int, default=0
        Seed of the random initialisation.
    """

    noise_parameterization = "edm"

    def __init__(self, in_channels=1, width=8, seed=0):
        super().__init__()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.in_channels = in_channels
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.noise_embed = nn.Linear(1, 2 * width)
        self.down = nn.Sequential(nn.SiLU(), nn.Conv2d(width, 2 * width, 3, stride=2, padding=1))
        self.mid = nn.Sequential(nn.SiLU(), nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.SiLU())
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2.0),
            nn.Conv2d(2 * width, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, in_channels, 3, padding=1),
        )
        torch.random.set_rng_state(generator_state)

    def forward(self, x, c_noise):
        h = self.down(self.stem(x))
        h = h + self.noise_embed(c_noise[:, None].to(h.dtype))[:, :, None, None]
        return self.up(self.mid(h))


class TinySiT(nn.Module):
    """A SiT-shaped flow model: ``forward(x, t, y)``, patch tokens, ``blocks.{k}``.

    Parameters
    ----------
    in_channels : int, default=4
    patch_size : int, default=2
    width : int, default=16
    depth : int, default=2
    num_classes : int, default=10
        The null class is ``num_classes``.
    seed : int, default=0
    """

    def __init__(self, in_channels=4, patch_size=2, width=16, depth=2, num_classes=10, seed=0):
        super().__init__()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.in_channels = in_channels
        self.x_embedder = nn.Conv2d(in_channels, width, patch_size, stride=patch_size)
        self.t_embedder = nn.Linear(1, width)
        self.y_embedder = nn.Embedding(num_classes + 1, width)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(width, 2, 2 * width, dropout=0.0, batch_first=True)
            for _ in range(depth)
        )
        self.final_layer = nn.Linear(width, patch_size * patch_size * in_channels)
        self.patch_size = patch_size
        torch.random.set_rng_state(generator_state)

    def forward(self, x, t, y):
        tokens = self.x_embedder(x).flatten(2).transpose(1, 2)
        cond = self.t_embedder(t[:, None].to(tokens.dtype)) + self.y_embedder(y)
        h = tokens + cond[:, None, :]
        for block in self.blocks:
            h = block(h)
        n, _, height, width = x.shape
        p = self.patch_size
        out = self.final_layer(h).reshape(n, height // p, width // p, p, p, -1)
        return out.permute(0, 5, 1, 3, 2, 4).reshape(x.shape)


def _seeded(build, seed):
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return build()
    finally:
        torch.random.set_rng_state(state)


def tiny_unet2d(in_channels=3, sample_size=16, seed=0):
    """A tiny random-init diffusers ``UNet2DModel`` (bottleneck ``mid_block``, 16 channels).

    Parameters
    ----------
    in_channels : int, default=3
    sample_size : int, default=16
    seed : int, default=0

    Returns
    -------
    unet : diffusers.UNet2DModel
    """
    from diffusers import UNet2DModel

    return _seeded(
        lambda: UNet2DModel(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=in_channels,
            block_out_channels=(8, 16),
            down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"),
            layers_per_block=1,
            norm_num_groups=4,
            attention_head_dim=8,
        ),
        seed,
    )


def ddpm_cifar10_unet2d(seed=0):
    """A random-init diffusers ``UNet2DModel`` with google/ddpm-cifar10-32's architecture.

    Parameters
    ----------
    seed : int, default=0

    Returns
    -------
    unet : diffusers.UNet2DModel
        35.7M parameters, 32x32 RGB.
    """
    from diffusers import UNet2DModel

    return _seeded(
        lambda: UNet2DModel(
            sample_size=32,
            in_channels=3,
            out_channels=3,
            block_out_channels=(128, 256, 256, 256),
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
            layers_per_block=2,
            norm_num_groups=32,
            norm_eps=1e-6,
            downsample_padding=0,
            flip_sin_to_cos=False,
            freq_shift=1,
            attention_head_dim=None,
        ),
        seed,
    )


def tiny_dit(in_channels=4, sample_size=8, num_layers=2, num_classes=10, seed=0):
    """A tiny random-init diffusers ``DiTTransformer2DModel``.

    Parameters
    ----------
    in_channels : int, default=4
    sample_size : int, default=8
    num_layers : int, default=2
    num_classes : int, default=10
    seed : int, default=0

    Returns
    -------
    transformer : diffusers.DiTTransformer2DModel
    """
    from diffusers import DiTTransformer2DModel

    def build():
        model = DiTTransformer2DModel(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=in_channels,
            num_layers=num_layers,
            sample_size=sample_size,
            patch_size=2,
            num_embeds_ada_norm=num_classes,
            norm_num_groups=4,
        )
        # adaLN-zero layers start at zero: randomise them so blocks see the noise level
        with torch.no_grad():
            for block in model.transformer_blocks:
                nn.init.normal_(block.norm1.linear.weight, std=0.02)
        return model

    return _seeded(build, seed)


def tiny_vae(seed=0):
    """A tiny random-init diffusers ``AutoencoderKL``: 3 channels -> 4 latents, /2 spatially.

    Parameters
    ----------
    seed : int, default=0

    Returns
    -------
    vae : diffusers.AutoencoderKL
    """
    from diffusers import AutoencoderKL

    return _seeded(
        lambda: AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(8, 8),
            latent_channels=4,
            norm_num_groups=4,
            layers_per_block=1,
            sample_size=16,
        ),
        seed,
    )
