"""Layers shared by the EDM release's U-Nets (SongUNet and DhariwalUNet).

Clean-room implementation written for skicr from the published description of
the architectures (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models"; Song et al. 2021; Dhariwal & Nichol 2021)
and from the parameter layout of the NVlabs EDM release (commit ``008a4e5``).
No NVlabs source is copied here. Class names, attribute names and parameter
shapes follow the release's state dicts, so its weights load with
``load_state_dict(strict=True)``, and the arithmetic follows the same order
of operations so outputs agree to float32 rounding.

Every layer casts its weights to the input's dtype: with ``use_fp16`` the
preconditioning wrapper feeds float16 activations on CUDA while the weights
stay float32 (the release's mixed-precision convention). Attention logits
and softmax are always computed in float32.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "Linear",
    "Conv2d",
    "GroupNorm",
    "UNetBlock",
    "PositionalEmbedding",
    "FourierEmbedding",
]


def _cast(tensor, dtype):
    return None if tensor is None else tensor.to(dtype)


class Linear(nn.Module):
    """Fully connected layer ``x @ W^T + b`` with weights cast to ``x.dtype``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default=True
    """

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        # xavier-uniform start; the released weights replace it on loading
        bound = math.sqrt(6 / (in_features + out_features))
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x):
        x = x @ self.weight.to(x.dtype).t()
        if self.bias is not None:
            x = x + self.bias.to(x.dtype)
        return x


class Conv2d(nn.Module):
    """Square convolution with optional 2x up- or downsampling by a FIR filter.

    ``kernel=0`` makes a weightless resampler. The resampling filter is the
    outer product of ``resample_filter`` with itself, normalised to sum 1
    (a buffer, saved in the state dict when ``up`` or ``down``).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel : int
        Kernel size (odd) or 0 for no convolution.
    bias : bool, default=True
    up, down : bool, default=False
    resample_filter : sequence of float, default=(1, 1)
    fused_resample : bool, default=False
        Fuse the resampling with the convolution (NCSN++'s residual encoder).
    """

    def __init__(self, in_channels, out_channels, kernel, bias=True, up=False, down=False,
                 resample_filter=(1, 1), fused_resample=False):
        super().__init__()
        if up and down:
            raise ValueError("Conv2d cannot both upsample and downsample.")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.up = bool(up)
        self.down = bool(down)
        self.fused_resample = bool(fused_resample)
        if kernel:
            fan_in = in_channels * kernel * kernel
            bound = math.sqrt(3 / fan_in)
            shape = (out_channels, in_channels, kernel, kernel)
            self.weight = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
            self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        else:
            self.weight = None
            self.bias = None
        taps = torch.as_tensor(list(resample_filter), dtype=torch.float32)
        fir = torch.outer(taps, taps)[None, None] / taps.sum().square()
        self.register_buffer("resample_filter", fir if (up or down) else None)

    def forward(self, x):
        w = _cast(self.weight, x.dtype)
        b = _cast(self.bias, x.dtype)
        f = _cast(self.resample_filter, x.dtype)
        w_pad = w.shape[-1] // 2 if w is not None else 0
        f_pad = (f.shape[-1] - 1) // 2 if f is not None else 0
        if self.fused_resample and self.up and w is not None:
            up_filter = (f * 4).tile([self.in_channels, 1, 1, 1])
            x = F.conv_transpose2d(x, up_filter, groups=self.in_channels, stride=2,
                                   padding=max(f_pad - w_pad, 0))
            x = F.conv2d(x, w, padding=max(w_pad - f_pad, 0))
        elif self.fused_resample and self.down and w is not None:
            x = F.conv2d(x, w, padding=w_pad + f_pad)
            x = F.conv2d(x, f.tile([self.out_channels, 1, 1, 1]), groups=self.out_channels,
                         stride=2)
        else:
            if self.up:
                up_filter = (f * 4).tile([self.in_channels, 1, 1, 1])
                x = F.conv_transpose2d(x, up_filter, groups=self.in_channels, stride=2,
                                       padding=f_pad)
            if self.down:
                x = F.conv2d(x, f.tile([self.in_channels, 1, 1, 1]), groups=self.in_channels,
                             stride=2, padding=f_pad)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        if b is not None:
            x = x + b.reshape(1, -1, 1, 1)
        return x


class GroupNorm(nn.Module):
    """Group normalisation with ``min(num_groups, C // min_channels_per_group)`` groups.

    Parameters
    ----------
    num_channels : int
    num_groups : int, default=32
    min_channels_per_group : int, default=4
    eps : float, default=1e-5
    """

    def __init__(self, num_channels, num_groups=32, min_channels_per_group=4, eps=1e-5):
        super().__init__()
        self.num_groups = min(int(num_groups), int(num_channels) // int(min_channels_per_group))
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x):
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype),
                            self.eps)


class UNetBlock(nn.Module):
    """Residual block with optional resampling and self-attention.

    One class covers the DDPM++, NCSN++ and ADM blocks:
    ``norm0 -> SiLU -> conv0 (resampling)``, the embedding enters through
    ``affine`` (an additive bias, or a scale and shift when
    ``adaptive_scale``), then ``norm1 -> SiLU -> dropout -> conv1``, plus the
    (projected) skip, times ``skip_scale``. With attention, multi-head
    self-attention over pixels follows (``norm2``, 1x1 ``qkv`` and ``proj``),
    its residual also times ``skip_scale``.

    Parameters
    ----------
    in_channels, out_channels, emb_channels : int
    up, down : bool, default=False
    attention : bool, default=False
    num_heads : int or None, default=None
        None gives ``out_channels // channels_per_head`` heads.
    channels_per_head : int, default=64
    dropout : float, default=0
    skip_scale : float, default=1
    eps : float, default=1e-5
    resample_filter : sequence of float, default=(1, 1)
    resample_proj : bool, default=False
        Use a 1x1 convolution on the skip path when resampling.
    adaptive_scale : bool, default=True
    """

    def __init__(self, in_channels, out_channels, emb_channels, up=False, down=False,
                 attention=False, num_heads=None, channels_per_head=64, dropout=0,
                 skip_scale=1, eps=1e-5, resample_filter=(1, 1), resample_proj=False,
                 adaptive_scale=True):
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.emb_channels = int(emb_channels)
        if not attention:
            self.num_heads = 0
        else:
            self.num_heads = int(num_heads) if num_heads is not None \
                else out_channels // channels_per_head
        self.dropout = float(dropout)
        self.skip_scale = float(skip_scale)
        self.adaptive_scale = bool(adaptive_scale)

        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, kernel=3, up=up, down=down,
                            resample_filter=resample_filter)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1))
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, kernel=3)
        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if (resample_proj or out_channels != in_channels) else 0
            self.skip = Conv2d(in_channels, out_channels, kernel=kernel, up=up, down=down,
                               resample_filter=resample_filter)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, kernel=1)
            self.proj = Conv2d(out_channels, out_channels, kernel=1)

    def forward(self, x, emb):
        residual = x
        x = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb)[:, :, None, None].to(x.dtype)
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            x = F.silu(torch.addcmul(shift, self.norm1(x), scale + 1))
        else:
            x = F.silu(self.norm1(x + params))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = x + (self.skip(residual) if self.skip is not None else residual)
        x = x * self.skip_scale
        if self.num_heads:
            batch, channels = x.shape[:2]
            head_channels = channels // self.num_heads
            qkv = self.qkv(self.norm2(x)).reshape(batch * self.num_heads, head_channels, 3, -1)
            q, k, v = qkv.unbind(2)
            # logits and softmax in float32 whatever the activation dtype
            logits = torch.einsum(
                "ncq,nck->nqk",
                q.to(torch.float32),
                (k / math.sqrt(head_channels)).to(torch.float32),
            )
            weights = logits.softmax(dim=2).to(q.dtype)
            attended = torch.einsum("nqk,nck->ncq", weights, v)
            x = self.proj(attended.reshape(*x.shape)) + x
            x = x * self.skip_scale
        return x


class PositionalEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of a scalar per sample (DDPM++, ADM).

    Frequencies ``(1 / max_positions) ** (i / (C/2 - endpoint))`` for
    ``i < C/2``; output ``[cos, sin]``.

    Parameters
    ----------
    num_channels : int
    max_positions : int, default=10000
    endpoint : bool, default=False
    """

    def __init__(self, num_channels, max_positions=10000, endpoint=False):
        super().__init__()
        self.num_channels = int(num_channels)
        self.max_positions = max_positions
        self.endpoint = bool(endpoint)

    def forward(self, x):
        half = self.num_channels // 2
        exponents = torch.arange(half, dtype=torch.float32, device=x.device)
        exponents = exponents / (half - (1 if self.endpoint else 0))
        freqs = (1 / self.max_positions) ** exponents
        angles = torch.outer(x, freqs.to(x.dtype))
        return torch.cat([angles.cos(), angles.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of a scalar per sample (NCSN++).

    Parameters
    ----------
    num_channels : int
    scale : float, default=16
        Std of the random frequencies (the ``freqs`` buffer, saved).
    """

    def __init__(self, num_channels, scale=16):
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, x):
        angles = torch.outer(x, (2 * math.pi * self.freqs).to(x.dtype))
        return torch.cat([angles.cos(), angles.sin()], dim=1)
