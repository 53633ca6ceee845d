"""A small U-Net for EDM-preconditioned denoising of small images.

The network is the *raw* function ``F`` of EDM (Karras et al. 2022): it is
called as ``net(c_in * x, c_noise)`` and the denoiser is
``D(x; sigma) = c_skip * x + c_out * F(c_in * x, c_noise)`` (see
:mod:`skicr.models._edm`).

Module names are chosen for layer search with a forward hook::

    noise_embed        Fourier features of c_noise -> MLP -> embedding
    stem               3x3 conv, image -> channels[0]             (H,   W)
    down.0             residual block                             (H,   W)
    down.1             downsample + residual block                (H/2, W/2)
    mid                downsample + two residual blocks           (H/4, W/4)
    up.0               upsample, concat down.1, residual block    (H/2, W/2)
    up.1               upsample, concat down.0, residual block    (H,   W)
    out                GroupNorm, SiLU, 3x3 conv -> image channels

Every named block returns a single tensor ``(B, C, h, w)``, so a hook on any
of them sees an ordinary feature map. ``mid`` is the bottleneck.
"""

import math
from numbers import Integral

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["SmallUNet"]


def _n_groups(n_channels):
    # GroupNorm with 8 groups where the channel count allows it
    for groups in (8, 4, 2):
        if n_channels % groups == 0:
            return groups
    return 1


class FourierNoiseEmbedding(nn.Module):
    """Sin/cos features of ``c_noise`` at fixed log-spaced frequencies, then an MLP.

    ``c_noise = ln(sigma) / 4`` spans about [-1.6, 1.1] for sigma in
    [0.002, 80]; the frequencies (0.1 to 10 cycles per unit) resolve that range
    from coarse to fine.
    """

    def __init__(self, n_frequencies, emb_dim):
        super().__init__()
        freqs = 2 * math.pi * torch.logspace(-1, 1, n_frequencies)
        # fixed, derived from the config: not saved in the state dict
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * n_frequencies, emb_dim),
            nn.SiLU(),
            nn.Linear(emb_dim, emb_dim),
        )

    def forward(self, c_noise):
        angles = c_noise[:, None].to(self.freqs.dtype) * self.freqs[None, :]
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=1))


class ResBlock(nn.Module):
    """Pre-activation residual block; the noise embedding is added after the first conv."""

    def __init__(self, in_channels, out_channels, emb_dim):
        super().__init__()
        self.norm1 = nn.GroupNorm(_n_groups(in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_channels)
        self.norm2 = nn.GroupNorm(_n_groups(out_channels), out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        # sqrt(1/2) keeps the variance of the residual sum near that of x (as EDM)
        return (h + self.skip(x)) * math.sqrt(0.5)


class Downsample(nn.Module):
    """Strided 3x3 conv: halves height and width."""

    def __init__(self, n_channels):
        super().__init__()
        self.conv = nn.Conv2d(n_channels, n_channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv."""

    def __init__(self, n_channels):
        super().__init__()
        self.conv = nn.Conv2d(n_channels, n_channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    """Optional downsample, then a residual block."""

    def __init__(self, in_channels, out_channels, emb_dim, downsample):
        super().__init__()
        self.downsample = Downsample(in_channels) if downsample else nn.Identity()
        self.res = ResBlock(in_channels, out_channels, emb_dim)

    def forward(self, x, emb):
        return self.res(self.downsample(x), emb)


class MidBlock(nn.Module):
    """The bottleneck: downsample, then two residual blocks."""

    def __init__(self, in_channels, mid_channels, emb_dim):
        super().__init__()
        self.downsample = Downsample(in_channels)
        self.res1 = ResBlock(in_channels, mid_channels, emb_dim)
        self.res2 = ResBlock(mid_channels, mid_channels, emb_dim)

    def forward(self, x, emb):
        return self.res2(self.res1(self.downsample(x), emb), emb)


class UpBlock(nn.Module):
    """Upsample, concatenate the skip connection, then a residual block."""

    def __init__(self, in_channels, skip_channels, out_channels, emb_dim):
        super().__init__()
        self.upsample = Upsample(in_channels)
        self.res = ResBlock(in_channels + skip_channels, out_channels, emb_dim)

    def forward(self, x, skip, emb):
        return self.res(torch.cat([self.upsample(x), skip], dim=1), emb)


class SmallUNet(nn.Module):
    """Small U-Net, the raw network ``F`` of an EDM-preconditioned denoiser.

    Two resolutions (``H`` and ``H/2``) with skip connections and a bottleneck
    ``mid`` at ``H/4``. Height and width must be multiples of 4. Each residual
    block receives an embedding of ``c_noise``. Modules are named for layer
    search: ``stem``, ``down.0``, ``down.1``, ``mid``, ``up.0``, ``up.1``,
    ``out``; each returns one feature map ``(B, C, h, w)``.

    Parameters
    ----------
    in_channels : int, default=1
        Image channels (input and output).
    channels : tuple of two int, default=(32, 64)
        Channels at full and half resolution.
    mid_channels : int, default=96
        Channels of the bottleneck ``mid`` (its output is
        ``(B, mid_channels, H/4, W/4)``).
    emb_dim : int, default=128
        Width of the noise embedding.
    n_frequencies : int, default=16
        Number of Fourier frequencies of ``c_noise`` fed to the embedding MLP.
    image_size : int, default=16
        Resolution the network is meant for (used by the sampler to choose the
        output shape; the network itself is fully convolutional).

    Attributes
    ----------
    config : dict
        The constructor arguments; ``SmallUNet(**net.config)`` rebuilds the
        architecture.

    Examples
    --------
    >>> import torch
    >>> from skicr.models import SmallUNet
    >>> net = SmallUNet()
    >>> x = torch.zeros(2, 1, 16, 16)
    >>> net(x, torch.zeros(2)).shape
    torch.Size([2, 1, 16, 16])
    """

    def __init__(
        self,
        in_channels=1,
        channels=(32, 64),
        mid_channels=96,
        emb_dim=128,
        n_frequencies=16,
        image_size=16,
    ):
        super().__init__()
        channels = tuple(channels)
        for name, value in [
            ("in_channels", in_channels),
            ("mid_channels", mid_channels),
            ("emb_dim", emb_dim),
            ("n_frequencies", n_frequencies),
            ("image_size", image_size),
        ]:
            if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}.")
        if len(channels) != 2 or not all(
            isinstance(c, Integral) and not isinstance(c, bool) and c >= 1
            for c in channels
        ):
            raise ValueError(
                f"channels must be two positive ints (full and half resolution); "
                f"got {channels!r}."
            )
        if image_size % 4:
            raise ValueError(
                f"image_size must be a multiple of 4 (two downsamplings); got {image_size}."
            )
        self.config = {
            "in_channels": int(in_channels),
            "channels": [int(c) for c in channels],
            "mid_channels": int(mid_channels),
            "emb_dim": int(emb_dim),
            "n_frequencies": int(n_frequencies),
            "image_size": int(image_size),
        }
        self.in_channels = int(in_channels)
        self.image_size = int(image_size)
        c0, c1 = channels

        self.noise_embed = FourierNoiseEmbedding(n_frequencies, emb_dim)
        self.stem = nn.Conv2d(in_channels, c0, 3, padding=1)
        self.down = nn.ModuleList(
            [
                DownBlock(c0, c0, emb_dim, downsample=False),
                DownBlock(c0, c1, emb_dim, downsample=True),
            ]
        )
        self.mid = MidBlock(c1, mid_channels, emb_dim)
        self.up = nn.ModuleList(
            [
                UpBlock(mid_channels, c1, c1, emb_dim),
                UpBlock(c1, c0, c0, emb_dim),
            ]
        )
        self.out = nn.Sequential(
            nn.GroupNorm(_n_groups(c0), c0),
            nn.SiLU(),
            nn.Conv2d(c0, in_channels, 3, padding=1),
        )
        # start as F = 0, i.e. D(x) = c_skip x: a stable beginning for training
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def __skicr_backbone__(self):
        # the feature extractor's adapter (skicr.extraction.as_backbone's hook): the raw
        # EDM network F, called as net(c_in * x, c_noise)
        from skicr.extraction import EDMBackbone

        return EDMBackbone(self)

    def forward(self, x, c_noise):
        """Apply the raw network.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, in_channels, H, W)
            The scaled noisy input ``c_in * x_noisy``; H and W multiples of 4.
        c_noise : torch.Tensor of shape (batch,) or scalar
            Noise conditioning ``ln(sigma) / 4``.

        Returns
        -------
        out : torch.Tensor of shape (batch, in_channels, H, W)
            ``F(c_in x, c_noise)``.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SmallUNet expects x of shape (batch, {self.in_channels}, H, W); "
                f"got {tuple(x.shape)}."
            )
        if x.shape[2] % 4 or x.shape[3] % 4:
            raise ValueError(
                f"SmallUNet needs height and width that are multiples of 4; "
                f"got {tuple(x.shape[2:])}."
            )
        c_noise = torch.as_tensor(c_noise, dtype=x.dtype, device=x.device)
        if c_noise.ndim == 0:
            c_noise = c_noise.expand(x.shape[0])
        if c_noise.shape != (x.shape[0],):
            raise ValueError(
                f"c_noise must be a scalar or have shape (batch,) = ({x.shape[0]},); "
                f"got {tuple(c_noise.shape)}."
            )
        emb = self.noise_embed(c_noise)
        h = self.stem(x)
        skips = []
        for block in self.down:
            h = block(h, emb)
            skips.append(h)
        h = self.mid(h, emb)
        for block in self.up:
            h = block(h, skips.pop(), emb)
        return self.out(h)
