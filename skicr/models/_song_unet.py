"""SongUNet: the DDPM++ / NCSN++ U-Net of the EDM release (CIFAR-10, FFHQ, AFHQv2).

Clean-room implementation written for skicr from the architecture described
by Song et al. 2021 ("Score-Based Generative Modeling through Stochastic
Differential Equations") as re-parameterised in the NVlabs EDM release
(commit ``008a4e5``); no NVlabs source is copied. Submodule names and
parameter shapes match the release's state dicts (``model.enc.16x16_block0``,
``model.dec.32x32_aux_conv``, ...), so an EDM snapshot read by
:func:`skicr.models.load_edm_pickle` loads with ``strict=True``.

The released configs:

- DDPM++ (``--arch=ddpmpp``): ``embedding_type="positional"``,
  ``encoder_type="standard"``, ``decoder_type="standard"``,
  ``channel_mult_noise=1``, ``resample_filter=(1, 1)``, ``model_channels=128``,
  ``channel_mult=(2, 2, 2)``.
- NCSN++ (``--arch=ncsnpp``): ``embedding_type="fourier"``,
  ``encoder_type="residual"``, ``decoder_type="standard"``,
  ``channel_mult_noise=2``, ``resample_filter=(1, 3, 3, 1)``, otherwise the same.

The encoder stores one ``{res}x{res}_conv`` / ``_down`` / ``_block{k}`` entry
per step (``aux`` entries for the skip / residual encoders); the decoder
starts with ``{res}x{res}_in0`` (attention) and ``_in1`` at the lowest
resolution, then ``_up`` and ``_block{k}`` entries, and ends with
``{res}x{res}_aux_norm`` / ``_aux_conv`` producing the output.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

from ._edm_blocks import Conv2d, FourierEmbedding, GroupNorm, Linear, PositionalEmbedding, UNetBlock

__all__ = ["SongUNet"]

_EMBEDDINGS = ("positional", "fourier")
_ENCODERS = ("standard", "skip", "residual")
_DECODERS = ("standard", "skip")


class SongUNet(nn.Module):
    """DDPM++ / NCSN++ U-Net, the raw network ``F`` of the EDM release.

    Called as ``net(x, noise_labels, class_labels, augment_labels=None)``
    with ``x`` already scaled by the preconditioning's ``c_in`` and
    ``noise_labels`` its ``c_noise`` (shape ``(n,)``).

    Parameters
    ----------
    img_resolution : int
        Input and output resolution.
    in_channels, out_channels : int
        Image channels at input and output.
    label_dim : int, default=0
        Number of classes (0: unconditional).
    augment_dim : int, default=0
        Augmentation-label size (9 for the released CIFAR-10 / AFHQ / FFHQ
        networks; 0: none).
    model_channels : int, default=128
    channel_mult : sequence of int, default=(1, 2, 2, 2)
        Channel multiplier per resolution level.
    channel_mult_emb : int, default=4
        Embedding width is ``model_channels * channel_mult_emb``.
    num_blocks : int, default=4
        Residual blocks per level.
    attn_resolutions : sequence of int, default=(16,)
        Resolutions with self-attention.
    dropout : float, default=0.10
    label_dropout : float, default=0
    embedding_type : {"positional", "fourier"}, default="positional"
    channel_mult_noise : int, default=1
    encoder_type : {"standard", "skip", "residual"}, default="standard"
    decoder_type : {"standard", "skip"}, default="standard"
    resample_filter : sequence of float, default=(1, 1)

    Examples
    --------
    >>> import torch
    >>> from skicr.models import SongUNet
    >>> net = SongUNet(16, 1, 1, model_channels=16, channel_mult=(1, 2), num_blocks=1,
    ...                attn_resolutions=(8,)).eval()
    >>> net(torch.zeros(2, 1, 16, 16), torch.zeros(2), None).shape
    torch.Size([2, 1, 16, 16])
    """

    def __init__(self, img_resolution, in_channels, out_channels, label_dim=0, augment_dim=0,
                 model_channels=128, channel_mult=(1, 2, 2, 2), channel_mult_emb=4,
                 num_blocks=4, attn_resolutions=(16,), dropout=0.10, label_dropout=0,
                 embedding_type="positional", channel_mult_noise=1, encoder_type="standard",
                 decoder_type="standard", resample_filter=(1, 1)):
        for name, value, allowed in (("embedding_type", embedding_type, _EMBEDDINGS),
                                     ("encoder_type", encoder_type, _ENCODERS),
                                     ("decoder_type", decoder_type, _DECODERS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {value!r}.")
        super().__init__()
        self.img_resolution = int(img_resolution)
        self.label_dropout = float(label_dropout)
        emb_channels = model_channels * channel_mult_emb
        noise_channels = model_channels * channel_mult_noise
        block_kwargs = dict(
            emb_channels=emb_channels, num_heads=1, dropout=dropout, skip_scale=math.sqrt(0.5),
            eps=1e-6, resample_filter=resample_filter, resample_proj=True, adaptive_scale=False,
        )

        # mapping network: noise (+ class, + augmentation) -> embedding
        if embedding_type == "positional":
            self.map_noise = PositionalEmbedding(noise_channels, endpoint=True)
        else:
            self.map_noise = FourierEmbedding(noise_channels)
        self.map_label = Linear(label_dim, noise_channels) if label_dim else None
        self.map_augment = Linear(augment_dim, noise_channels, bias=False) if augment_dim else None
        self.map_layer0 = Linear(noise_channels, emb_channels)
        self.map_layer1 = Linear(emb_channels, emb_channels)

        self.enc = nn.ModuleDict()
        channels = in_channels
        aux_channels = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                self.enc[f"{res}x{res}_conv"] = Conv2d(channels, model_channels, kernel=3)
                channels = model_channels
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(channels, channels, down=True,
                                                          **block_kwargs)
                if encoder_type == "skip":
                    self.enc[f"{res}x{res}_aux_down"] = Conv2d(
                        aux_channels, aux_channels, kernel=0, down=True,
                        resample_filter=resample_filter)
                    self.enc[f"{res}x{res}_aux_skip"] = Conv2d(aux_channels, channels, kernel=1)
                if encoder_type == "residual":
                    self.enc[f"{res}x{res}_aux_residual"] = Conv2d(
                        aux_channels, channels, kernel=3, down=True,
                        resample_filter=resample_filter, fused_resample=True)
                    aux_channels = channels
            for idx in range(num_blocks):
                out = model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(
                    channels, out, attention=res in attn_resolutions, **block_kwargs)
                channels = out
        skips = [block.out_channels for name, block in self.enc.items() if "aux" not in name]

        self.dec = nn.ModuleDict()
        levels = list(enumerate(channel_mult))
        for level, mult in reversed(levels):
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
                attention = idx == num_blocks and res in attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, out, attention=attention,
                                                                **block_kwargs)
                channels = out
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    self.dec[f"{res}x{res}_aux_up"] = Conv2d(
                        out_channels, out_channels, kernel=0, up=True,
                        resample_filter=resample_filter)
                self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(channels, eps=1e-6)
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(channels, out_channels, kernel=3)

    def forward(self, x, noise_labels, class_labels=None, augment_labels=None):
        """Raw network output ``F(x, c_noise)``.

        Parameters
        ----------
        x : torch.Tensor of shape (n, in_channels, R, R)
        noise_labels : torch.Tensor of shape (n,)
        class_labels : torch.Tensor of shape (n, label_dim) or None
        augment_labels : torch.Tensor of shape (n, augment_dim) or None

        Returns
        -------
        out : torch.Tensor of shape (n, out_channels, R, R)
        """
        emb = self.map_noise(noise_labels)
        # the release orders the embedding [sin, cos]: swap the two halves
        emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(*emb.shape)
        if self.map_label is not None:
            labels = class_labels
            if self.training and self.label_dropout:
                keep = torch.rand([x.shape[0], 1], device=x.device) >= self.label_dropout
                labels = labels * keep.to(labels.dtype)
            emb = emb + self.map_label(labels * math.sqrt(self.map_label.in_features))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = F.silu(self.map_layer0(emb))
        emb = F.silu(self.map_layer1(emb))

        skips = []
        aux = x
        for name, block in self.enc.items():
            if "aux_down" in name:
                aux = block(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + block(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + block(aux)) / math.sqrt(2)
            else:
                x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
                skips.append(x)

        aux = None
        head = None
        for name, block in self.dec.items():
            if "aux_up" in name:
                aux = block(aux)
            elif "aux_norm" in name:
                head = block(x)
            elif "aux_conv" in name:
                head = block(F.silu(head))
                aux = head if aux is None else head + aux
            else:
                if x.shape[1] != block.in_channels:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = block(x, emb)
        return aux
