"""DhariwalUNet: the ADM U-Net of the EDM release (ImageNet-64).

Clean-room implementation written for skicr from the architecture of
Dhariwal & Nichol 2021 ("Diffusion Models Beat GANs on Image Synthesis") as
re-parameterised in the NVlabs EDM release (commit ``008a4e5``); no NVlabs
source is copied. Submodule names and parameter shapes match the release's
state dicts (``model.enc.64x64_conv``, ``model.dec.8x8_in0``,
``model.out_conv``, ...).

The released ImageNet-64 config (``--arch=adm``): ``model_channels=192``,
``channel_mult=(1, 2, 3, 4)``, ``num_blocks=3``, ``attn_resolutions=(32, 16, 8)``,
``dropout=0.10``, class-conditional with ``label_dim=1000``, ``use_fp16=True``
on the preconditioning wrapper. Attention blocks get one head per 64
channels; the embedding enters each block as a scale and shift
(``adaptive_scale``).
"""

from torch import nn
from torch.nn import functional as F

import torch

from ._edm_blocks import Conv2d, GroupNorm, Linear, PositionalEmbedding, UNetBlock

__all__ = ["DhariwalUNet"]


class DhariwalUNet(nn.Module):
    """ADM U-Net, the raw network ``F`` of the EDM release.

    Called as ``net(x, noise_labels, class_labels, augment_labels=None)``.

    Parameters
    ----------
    img_resolution : int
    in_channels, out_channels : int
    label_dim : int, default=0
        Number of classes (0: unconditional); labels are one-hot rows.
    augment_dim : int, default=0
    model_channels : int, default=192
    channel_mult : sequence of int, default=(1, 2, 3, 4)
    channel_mult_emb : int, default=4
    num_blocks : int, default=3
    attn_resolutions : sequence of int, default=(32, 16, 8)
    dropout : float, default=0.10
    label_dropout : float, default=0

    Examples
    --------
    >>> import torch
    >>> from skicr.models import DhariwalUNet
    >>> net = DhariwalUNet(16, 3, 3, label_dim=10, model_channels=32, channel_mult=(1, 2),
    ...                    num_blocks=1, attn_resolutions=(8,)).eval()
    >>> net(torch.zeros(2, 3, 16, 16), torch.zeros(2), torch.eye(10)[:2]).shape
    torch.Size([2, 3, 16, 16])
    """

    def __init__(self, img_resolution, in_channels, out_channels, label_dim=0, augment_dim=0,
                 model_channels=192, channel_mult=(1, 2, 3, 4), channel_mult_emb=4,
                 num_blocks=3, attn_resolutions=(32, 16, 8), dropout=0.10, label_dropout=0):
        super().__init__()
        self.img_resolution = int(img_resolution)
        self.label_dropout = float(label_dropout)
        emb_channels = model_channels * channel_mult_emb
        block_kwargs = dict(emb_channels=emb_channels, channels_per_head=64, dropout=dropout)

        self.map_noise = PositionalEmbedding(model_channels)
        self.map_augment = Linear(augment_dim, model_channels, bias=False) if augment_dim else None
        self.map_layer0 = Linear(model_channels, emb_channels)
        self.map_layer1 = Linear(emb_channels, emb_channels)
        self.map_label = Linear(label_dim, emb_channels, bias=False) if label_dim else None

        self.enc = nn.ModuleDict()
        channels = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                self.enc[f"{res}x{res}_conv"] = Conv2d(channels, model_channels * mult, kernel=3)
                channels = model_channels * mult
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(channels, channels, down=True,
                                                          **block_kwargs)
            for idx in range(num_blocks):
                out = model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(
                    channels, out, attention=res in attn_resolutions, **block_kwargs)
                channels = out
        skips = [block.out_channels for block in self.enc.values()]

        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(channels, channels, attention=True,
                                                         **block_kwargs)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(channels, channels, **block_kwargs)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(channels, channels, up=True,
                                                        **block_kwargs)
            for idx in range(num_blocks + 1):
                cin = channels + skips.pop()
                out = model_channels * mult
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(
                    cin, out, attention=res in attn_resolutions, **block_kwargs)
                channels = out
        self.out_norm = GroupNorm(channels)
        self.out_conv = Conv2d(channels, out_channels, kernel=3)

    def forward(self, x, noise_labels, class_labels=None, augment_labels=None):
        """Raw network output ``F(x, c_noise, labels)``.

        Parameters
        ----------
        x : torch.Tensor of shape (n, in_channels, R, R)
        noise_labels : torch.Tensor of shape (n,)
        class_labels : torch.Tensor of shape (n, label_dim) or None
            One-hot rows (a zero row: no class).
        augment_labels : torch.Tensor of shape (n, augment_dim) or None

        Returns
        -------
        out : torch.Tensor of shape (n, out_channels, R, R)
        """
        emb = self.map_noise(noise_labels)
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = F.silu(self.map_layer0(emb))
        emb = self.map_layer1(emb)
        if self.map_label is not None:
            labels = class_labels
            if self.training and self.label_dropout:
                keep = torch.rand([x.shape[0], 1], device=x.device) >= self.label_dropout
                labels = labels * keep.to(labels.dtype)
            emb = emb + self.map_label(labels)
        emb = F.silu(emb)

        skips = []
        for block in self.enc.values():
            x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
            skips.append(x)
        for block in self.dec.values():
            if x.shape[1] != block.in_channels:
                x = torch.cat([x, skips.pop()], dim=1)
            x = block(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))
