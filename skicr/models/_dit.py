"""DiT and SiT: class-conditional latent diffusion transformers with adaLN-Zero.

Written for skicr from the papers (Peebles & Xie 2023, "Scalable Diffusion
Models with Transformers"; Ma et al. 2024, "SiT: Exploring Flow and
Diffusion-based Generative Models with Scalable Interpolant Transformers")
and the state-dict layout of the official releases (facebookresearch/DiT
``ed81ce2``, willisma/SiT ``947f95b``). Submodule names and parameter shapes
match the released ``DiT-XL-2-256x256.pt`` / ``SiT-XL-2-256x256.pt`` state
dicts (``x_embedder.proj``, ``t_embedder.mlp.0``, ``y_embedder.embedding_table``,
``blocks.{k}.attn.qkv``, ``blocks.{k}.adaLN_modulation.1``,
``final_layer.linear``, the frozen ``pos_embed``), so they load with
``strict=True``; timm is not needed.

The network (both families)::

    tokens = patchify(x) + pos_embed          # fixed 2-D sin-cos table
    c = t_embed(t) + y_embed(y)               # y = num_classes: the null class
    for block in blocks:                      # adaLN-Zero transformer blocks
        shift1, scale1, gate1, shift2, scale2, gate2 = adaLN(c)
        tokens += gate1 * attn(LN(tokens) * (1 + scale1) + shift1)
        tokens += gate2 * mlp(LN(tokens) * (1 + scale2) + shift2)
    out = unpatchify(final_layer(tokens, c))  # 2C channels with learn_sigma

Time inputs differ: DiT takes an integer DDPM timestep (0 = least noisy, of
the linear 1000-step schedule) and returns ``[eps, v]`` (2C channels when
``learn_sigma``); SiT takes ``t`` in [0, 1] with t = 0 noise and t = 1 data
(``x_t = t x1 + (1 - t) x0``) and returns the velocity ``x1 - x0`` (the
first C channels only). Both feed ``t`` unscaled to the sinusoidal embedding.

Named configs: ``"DiT-XL/2"``, ``"SiT-B/4"``, ... (sizes S, B, L, XL; patch
2, 4, 8), see :data:`TRANSFORMER_CONFIGS` and :func:`build_transformer`.
"""

import math
import re

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "DiT",
    "SiT",
    "TRANSFORMER_CONFIGS",
    "build_transformer",
    "sincos_pos_embed_2d",
]

#: (depth, hidden_size, num_heads) of the released sizes.
TRANSFORMER_CONFIGS = {
    "XL": (28, 1152, 16),
    "L": (24, 1024, 16),
    "B": (12, 768, 12),
    "S": (12, 384, 6),
}
_PATCH_SIZES = (2, 4, 8)


def sincos_pos_embed_2d(embed_dim, grid_size):
    """Fixed 2-D sine-cosine position table of the DiT / SiT releases.

    The first half of the channels encodes the column index, the second
    half the row index (the releases' order); each half is ``[sin(pos * w), cos(pos * w)]`` with
    ``w_i = 10000 ** (-i / (D/4))``. Tokens are in row-major order.

    Parameters
    ----------
    embed_dim : int
        Channels, a multiple of 4.
    grid_size : int
        Tokens per side.

    Returns
    -------
    table : numpy.ndarray of shape (grid_size ** 2, embed_dim), float64

    Examples
    --------
    >>> from skicr.models import sincos_pos_embed_2d
    >>> sincos_pos_embed_2d(8, 2).shape
    (4, 8)
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be a multiple of 4; got {embed_dim}.")
    quarter = embed_dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    coords = np.arange(grid_size, dtype=np.float32)
    cols, rows = np.meshgrid(coords, coords)

    def encode(positions):
        angles = np.outer(positions.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([encode(cols), encode(rows)], axis=1)


def _modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens by a strided convolution."""

    def __init__(self, input_size, patch_size, in_channels, hidden_size):
        super().__init__()
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (input_size // patch_size, input_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size, bias=True)

    def forward(self, x):
        if tuple(x.shape[-2:]) != tuple(p * g for p, g in zip(self.patch_size, self.grid_size)):
            raise ValueError(
                f"input is {tuple(x.shape[-2:])} but the network was built for "
                f"{self.grid_size[0] * self.patch_size[0]}x{self.grid_size[1] * self.patch_size[1]} "
                "latents (256x256 images give 32x32 SD-VAE latents)."
            )
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of a scalar time (cos first), then a 2-layer SiLU MLP."""

    def __init__(self, hidden_size, frequency_embedding_size=256):
        super().__init__()
        self.frequency_embedding_size = int(frequency_embedding_size)
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000):
        """``[cos(t w), sin(t w)]`` with ``w_i = max_period ** (-i / (dim // 2))``."""
        half = dim // 2
        exponents = torch.arange(half, dtype=torch.float32) / half
        freqs = torch.exp(-math.log(max_period) * exponents).to(t.device)
        angles = t[:, None].float() * freqs[None]
        embedding = torch.cat([angles.cos(), angles.sin()], dim=-1)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t):
        return self.mlp(self.timestep_embedding(t, self.frequency_embedding_size))


class LabelEmbedder(nn.Module):
    """Class table; one extra row (index ``num_classes``) is the null class."""

    def __init__(self, num_classes, hidden_size, dropout_prob):
        super().__init__()
        self.num_classes = int(num_classes)
        self.dropout_prob = float(dropout_prob)
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)

    def forward(self, labels, train, force_drop_ids=None):
        if force_drop_ids is not None:
            drop = force_drop_ids == 1
        elif train and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
        else:
            drop = None
        if drop is not None:
            labels = torch.where(drop, self.num_classes, labels)
        return self.embedding_table(labels)


class Attention(nn.Module):
    """Multi-head self-attention over tokens (fused scaled-dot-product kernel)."""

    def __init__(self, dim, num_heads):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_size {dim} is not divisible by num_heads {num_heads}.")
        self.num_heads = int(num_heads)
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, channels))


class Mlp(nn.Module):
    """Two linear layers with a tanh-approximated GELU between them."""

    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning; returns tokens (n, T, D)."""

    def __init__(self, hidden_size, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x, c):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate1[:, None] * self.attn(_modulate(self.norm1(x), shift1, scale1))
        x = x + gate2[:, None] * self.mlp(_modulate(self.norm2(x), shift2, scale2))
        return x


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm and a linear map to patch pixels."""

    def __init__(self, hidden_size, patch_size, out_channels):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(_modulate(self.norm_final(x), shift, scale))


_PARAMETERS = """
    Parameters
    ----------
    input_size : int, default=32
        Latent side (32 for 256x256 images through the SD VAE).
    patch_size : int, default=2
    in_channels : int, default=4
    hidden_size : int, default=1152
    depth : int, default=28
    num_heads : int, default=16
    mlp_ratio : float, default=4.0
    class_dropout_prob : float, default=0.1
        Above 0 the label table has the extra null-class row.
    num_classes : int, default=1000
    learn_sigma : bool, default=True
"""


class _ReleaseTransformer(nn.Module):
    """The network both releases share: patch and position embedding, adaLN-Zero blocks, final layer.

    A family sets what its time input means (:attr:`time_input`, read by the
    feature extractor's adapter), the name of that adapter in
    :mod:`skicr.extraction` (``_adapter``) and what ``forward`` returns.
    """

    #: what ``t`` means (read by the feature extractor's adapter)
    time_input = None
    #: the adapter class of skicr.extraction that reads this family
    _adapter = None

    def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28,
                 num_heads=16, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000,
                 learn_sigma=True):
        super().__init__()
        self.input_size = int(input_size)
        self.learn_sigma = bool(learn_sigma)
        self.in_channels = int(in_channels)
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_size = int(patch_size)
        self.num_heads = int(num_heads)
        self.num_classes = int(num_classes)
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        table = sincos_pos_embed_2d(hidden_size, self.x_embedder.grid_size[0])
        # a frozen parameter (not a buffer), as in the releases' state dicts
        self.pos_embed = nn.Parameter(torch.tensor(table[None], dtype=torch.float32),
                                      requires_grad=False)
        self.blocks = nn.ModuleList(
            [DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)]
        )
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)

    def __skicr_backbone__(self):
        """The extractor's adapter for this network (null class, middle block).

        Returns
        -------
        backbone : skicr.extraction.DiTReleaseBackbone or skicr.extraction.SiTReleaseBackbone
        """
        from .. import extraction

        return getattr(extraction, self._adapter)(self)

    @property
    def null_class(self):
        """Index of the unconditional class (None without a null row)."""
        rows = self.y_embedder.embedding_table.num_embeddings
        return self.num_classes if rows > self.num_classes else None

    def unpatchify(self, x):
        """Tokens (n, T, p*p*C) -> images (n, C, H, W).

        Parameters
        ----------
        x : torch.Tensor of shape (n, T, p * p * out_channels)

        Returns
        -------
        images : torch.Tensor of shape (n, out_channels, H, W)
        """
        channels, patch = self.out_channels, self.patch_size
        side = int(round(x.shape[1] ** 0.5))
        x = x.reshape(x.shape[0], side, side, patch, patch, channels)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], channels, side * patch, side * patch)

    def _transformer(self, x, t, y):
        x = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y, self.training)
        for block in self.blocks:
            x = block(x, c)
        return self.unpatchify(self.final_layer(x, c))


class DiT(_ReleaseTransformer):
    __doc__ = """Diffusion transformer of the DiT release (epsilon and variance outputs).

    Called as ``net(x, t, y)``: latents ``x`` (n, C, H, W), integer DDPM
    timesteps ``t`` (n,) in [0, 999] and class indices ``y`` (n,), where
    ``num_classes`` is the null class. Returns (n, 2C, H, W) with
    ``learn_sigma`` (epsilon, then the variance interpolation ``v``),
    else (n, C, H, W).
""" + _PARAMETERS + """
    Examples
    --------
    >>> import torch
    >>> from skicr.models import DiT
    >>> net = DiT(input_size=8, hidden_size=64, depth=2, num_heads=2, num_classes=10).eval()
    >>> net(torch.zeros(2, 4, 8, 8), torch.tensor([100, 700]), torch.tensor([1, 10])).shape
    torch.Size([2, 8, 8, 8])
    """

    time_input = "ddpm_timestep"
    _adapter = "DiTReleaseBackbone"

    def forward(self, x, t, y):
        """Network output for latents ``x`` at timesteps ``t`` with classes ``y``.

        Parameters
        ----------
        x : torch.Tensor of shape (n, in_channels, input_size, input_size)
        t : torch.Tensor of shape (n,)
        y : torch.Tensor of shape (n,), int64

        Returns
        -------
        out : torch.Tensor of shape (n, out_channels, input_size, input_size)
        """
        return self._transformer(x, t, y)


class SiT(_ReleaseTransformer):
    __doc__ = """Scalable interpolant transformer of the SiT release (velocity output).

    Same layout and parameters as :class:`DiT`; called as ``net(x, t, y)``
    with ``t`` in [0, 1] (t = 0 noise, t = 1 data on the linear path
    ``x_t = t x1 + (1 - t) x0``). Returns the velocity (n, C, H, W); with
    ``learn_sigma`` the extra C output channels are computed and dropped.
""" + _PARAMETERS + """
    Examples
    --------
    >>> import torch
    >>> from skicr.models import SiT
    >>> net = SiT(input_size=8, hidden_size=64, depth=2, num_heads=2, num_classes=10).eval()
    >>> net(torch.zeros(2, 4, 8, 8), torch.tensor([0.3, 0.7]), torch.tensor([1, 10])).shape
    torch.Size([2, 4, 8, 8])
    """

    time_input = "flow_time_data_at_one"
    _adapter = "SiTReleaseBackbone"

    def forward(self, x, t, y):
        """Velocity for latents ``x`` at times ``t`` with classes ``y``.

        Parameters
        ----------
        x : torch.Tensor of shape (n, in_channels, input_size, input_size)
        t : torch.Tensor of shape (n,), in [0, 1]
        y : torch.Tensor of shape (n,), int64

        Returns
        -------
        velocity : torch.Tensor of shape (n, in_channels, input_size, input_size)
        """
        out = self._transformer(x, t, y)
        return out.chunk(2, dim=1)[0] if self.learn_sigma else out


_NAME = re.compile(r"^(DiT|SiT)-(XL|L|B|S)/(\d+)$")


def build_transformer(name, **kwargs):
    """Build a DiT or SiT from its release name (``"SiT-XL/2"``, ``"DiT-B/4"``...).

    Parameters
    ----------
    name : str
        ``"{DiT|SiT}-{S|B|L|XL}/{2|4|8}"``; ``-`` in place of ``/`` is
        accepted (``"SiT-XL-2"``, as in the checkpoint file names).
    **kwargs
        Other constructor arguments (``input_size=32`` for 256x256 images,
        64 for 512x512; ``num_classes``...).

    Returns
    -------
    net : DiT or SiT

    Examples
    --------
    >>> from skicr.models import build_transformer
    >>> net = build_transformer("SiT-S/8", input_size=16)
    >>> type(net).__name__, len(net.blocks)
    ('SiT', 12)
    """
    match = _NAME.match(re.sub(r"^(DiT|SiT)-(XL|L|B|S)-(\d+)$", r"\1-\2/\3", str(name)))
    if match is None or int(match.group(3)) not in _PATCH_SIZES:
        names = [f"{f}-{s}/{p}" for f in ("DiT", "SiT") for s in TRANSFORMER_CONFIGS
                 for p in _PATCH_SIZES]
        raise ValueError(f"Unknown transformer config {name!r}; expected one of {names}.")
    family, size, patch = match.group(1), match.group(2), int(match.group(3))
    depth, hidden, heads = TRANSFORMER_CONFIGS[size]
    cls = DiT if family == "DiT" else SiT
    return cls(depth=depth, hidden_size=hidden, patch_size=patch, num_heads=heads, **kwargs)
