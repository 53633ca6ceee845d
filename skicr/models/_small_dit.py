"""A small patch transformer (DiT-like) denoiser for small images.

Images are cut into ``patch_size x patch_size`` patches, embedded as tokens
with fixed 2-D sin/cos positions, and passed through ``depth`` transformer
blocks conditioned on the noise level by adaptive LayerNorm with zero-init
gates (adaLN-Zero, Peebles & Xie 2023). Module names are chosen for layer
search with a forward hook::

    noise_embed    Fourier features of the time input -> MLP -> embedding
    patch_embed    strided conv: image -> (B, width, H/p, W/p)
    blocks.{k}     transformer block k -> tokens (B, n_tokens, width)
    final          adaLN, linear -> patches -> image (B, C, H, W)

The time input is whatever the training parameterisation uses: the flow time
``t`` in [0, 1] (``FlowBackbone``), or ``c_noise = ln(sigma) / 4`` (EDM).
"""

import math
from numbers import Integral

import torch
from torch import nn
from torch.nn import functional as F

from ._unet import FourierNoiseEmbedding

__all__ = ["SmallDiT"]


def _sincos_positions(grid, width):
    """Fixed 2-D sin/cos position embedding of a ``grid x grid`` token layout, (grid**2, width)."""
    quarter = width // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    coords = torch.arange(grid, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    parts = []
    for axis in (yy.reshape(-1), xx.reshape(-1)):
        angles = axis[:, None] * omega[None, :]
        parts += [angles.sin(), angles.cos()]
    pos = torch.cat(parts, dim=1)
    if pos.shape[1] < width:  # width not a multiple of 4: pad with zeros
        pos = F.pad(pos, (0, width - pos.shape[1]))
    return pos.float()


def _modulate(x, shift, scale):
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-Zero conditioning; returns tokens."""

    def __init__(self, width, n_heads, mlp_ratio):
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(hidden, width))
        self.modulation = nn.Linear(width, 6 * width)
        # adaLN-Zero: every block starts as the identity
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x, emb):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(emb)).chunk(6, dim=1)
        batch, n_tokens, width = x.shape
        h = _modulate(self.norm1(x), shift1, scale1)
        q, k, v = (
            self.qkv(h).reshape(batch, n_tokens, 3, self.n_heads, width // self.n_heads)
            .permute(2, 0, 3, 1, 4)
        )
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, n_tokens, width)
        x = x + gate1[:, None, :] * self.proj(attn)
        x = x + gate2[:, None, :] * self.mlp(_modulate(self.norm2(x), shift2, scale2))
        return x


class FinalLayer(nn.Module):
    """adaLN then a linear map of each token to its patch's pixels (zero-init)."""

    def __init__(self, width, patch_pixels):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(width, 2 * width)
        self.linear = nn.Linear(width, patch_pixels)
        for layer in (self.modulation, self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x, emb):
        shift, scale = self.modulation(F.silu(emb)).chunk(2, dim=1)
        return self.linear(_modulate(self.norm(x), shift, scale))


class SmallDiT(nn.Module):
    """Small DiT-like patch transformer, called as ``net(x, time)``.

    Parameters
    ----------
    in_channels : int, default=1
        Image channels (input and output).
    image_size : int, default=16
        Height and width of the images; a multiple of ``patch_size``.
    patch_size : int, default=2
        Side of the square patches (one token each).
    width : int, default=96
        Token width; a multiple of ``n_heads``.
    depth : int, default=4
        Number of transformer blocks ``blocks.0 ... blocks.{depth-1}``.
    n_heads : int, default=4
        Attention heads.
    mlp_ratio : float, default=4.0
        Hidden width of the MLPs relative to ``width``.
    n_frequencies : int, default=16
        Fourier frequencies of the time input.

    Attributes
    ----------
    config : dict
        The constructor arguments; ``SmallDiT(**net.config)`` rebuilds it.

    Examples
    --------
    >>> import torch
    >>> from skicr.models import SmallDiT
    >>> net = SmallDiT()
    >>> net(torch.zeros(2, 1, 16, 16), torch.zeros(2)).shape
    torch.Size([2, 1, 16, 16])
    """

    def __init__(self, in_channels=1, image_size=16, patch_size=2, width=96, depth=4,
                 n_heads=4, mlp_ratio=4.0, n_frequencies=16):
        super().__init__()
        for name, value in [("in_channels", in_channels), ("image_size", image_size),
                            ("patch_size", patch_size), ("width", width), ("depth", depth),
                            ("n_heads", n_heads), ("n_frequencies", n_frequencies)]:
            if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}.")
        if image_size % patch_size:
            raise ValueError(
                f"image_size ({image_size}) must be a multiple of patch_size ({patch_size})."
            )
        if width % n_heads:
            raise ValueError(f"width ({width}) must be a multiple of n_heads ({n_heads}).")
        if not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0; got {mlp_ratio!r}.")
        self.config = {
            "in_channels": int(in_channels), "image_size": int(image_size),
            "patch_size": int(patch_size), "width": int(width), "depth": int(depth),
            "n_heads": int(n_heads), "mlp_ratio": float(mlp_ratio),
            "n_frequencies": int(n_frequencies),
        }
        self.in_channels, self.image_size, self.patch_size = int(in_channels), int(image_size), int(patch_size)
        self.grid = image_size // patch_size
        self.noise_embed = FourierNoiseEmbedding(n_frequencies, width)
        self.patch_embed = nn.Conv2d(in_channels, width, patch_size, stride=patch_size)
        self.register_buffer("pos_embed", _sincos_positions(self.grid, width)[None], persistent=False)
        self.blocks = nn.ModuleList(DiTBlock(width, n_heads, mlp_ratio) for _ in range(depth))
        self.final = FinalLayer(width, patch_size * patch_size * in_channels)

    def forward(self, x, time):
        """Apply the network.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, in_channels, image_size, image_size)
            Network input (the parameterisation's scaled noisy image).
        time : torch.Tensor of shape (batch,) or scalar
            Time / noise conditioning.

        Returns
        -------
        out : torch.Tensor of shape (batch, in_channels, image_size, image_size)
        """
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"SmallDiT expects x of shape (batch, {expected[0]}, {expected[1]}, {expected[2]}); "
                f"got {tuple(x.shape)}."
            )
        time = torch.as_tensor(time, dtype=x.dtype, device=x.device)
        if time.ndim == 0:
            time = time.expand(x.shape[0])
        emb = self.noise_embed(time)
        h = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        for block in self.blocks:
            h = block(h, emb)
        patches = self.final(h, emb)  # (B, N, p*p*C)
        b, p, g, c = x.shape[0], self.patch_size, self.grid, self.in_channels
        out = patches.reshape(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(b, c, g * p, g * p)
