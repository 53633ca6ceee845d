"""Preconditioning wrappers of the EDM release: VP, VE, iDDPM and EDM.

Clean-room implementation written for skicr from Table 1 of Karras et al.
2022 ("Elucidating the Design Space of Diffusion-Based Generative Models")
and the constructor arguments recorded in the NVlabs EDM release's pickles
(commit ``008a4e5``); no NVlabs source is copied. Each wrapper holds the raw
network as ``model`` (so parameter names are ``model.enc...`` as in the
release) and computes the denoiser

    D(x; sigma) = c_skip x + c_out F(c_in x, c_noise, class_labels)

with ``x`` a VE-noisy image ``y + sigma n`` (data in [-1, 1]) and ``sigma``
one noise std per sample:

=========  =======================  ================  =========================
wrapper    c_skip, c_out            c_in              c_noise
=========  =======================  ================  =========================
VP         1, -sigma                1/sqrt(sigma^2+1)  (M-1) t(sigma)
VE         1, sigma                 1                  ln(sigma / 2)
iDDPM      1, -sigma                1/sqrt(sigma^2+1)  M-1-j (nearest u_j)
EDM        sd^2/(s^2+sd^2),         1/sqrt(s^2+sd^2)   ln(sigma) / 4
           s sd/sqrt(s^2+sd^2)
=========  =======================  ================  =========================

``use_fp16`` keeps the weights in float32 and runs the raw network on float16
activations, and only on CUDA devices (on the CPU it has no effect), like the
release; ``force_fp32=True`` turns it off for one call.
"""

import math

import numpy as np
import torch
from torch import nn

from ._dhariwal_unet import DhariwalUNet
from ._song_unet import SongUNet

__all__ = ["PrecondVP", "PrecondVE", "PrecondIDDPM", "PrecondEDM", "EDM_MODEL_TYPES"]

#: Raw network families a wrapper can hold, by the release's ``model_type`` names.
EDM_MODEL_TYPES = {"SongUNet": SongUNet, "DhariwalUNet": DhariwalUNet}


def _build_model(model_type, **kwargs):
    if model_type not in EDM_MODEL_TYPES:
        raise ValueError(
            f"model_type must be one of {sorted(EDM_MODEL_TYPES)}; got {model_type!r}."
        )
    return EDM_MODEL_TYPES[model_type](**kwargs)


class _Precond(nn.Module):
    """Shared constructor and forward of the four wrappers."""

    _out_channel_factor = 1

    def __init__(self, img_resolution, img_channels, label_dim, use_fp16, model_type,
                 model_kwargs):
        super().__init__()
        self.img_resolution = int(img_resolution)
        self.img_channels = int(img_channels)
        self.label_dim = int(label_dim)
        self.use_fp16 = bool(use_fp16)
        self.model = _build_model(
            model_type, img_resolution=img_resolution, in_channels=img_channels,
            out_channels=img_channels * self._out_channel_factor, label_dim=label_dim,
            **model_kwargs,
        )

    def __skicr_backbone__(self):
        """The extractor's adapter for this network (:class:`~skicr.extraction.EDMReleaseBackbone`).

        Returns
        -------
        backbone : skicr.extraction.EDMReleaseBackbone
        """
        from ..extraction import EDMReleaseBackbone

        return EDMReleaseBackbone(self)

    def coefficients(self, sigma):
        """``c_skip, c_out, c_in, c_noise`` for ``sigma`` of shape (n, 1, 1, 1).

        Parameters
        ----------
        sigma : torch.Tensor of shape (n, 1, 1, 1)

        Returns
        -------
        c_skip, c_out, c_in, c_noise : torch.Tensor or float
        """
        raise NotImplementedError

    def forward(self, x, sigma, class_labels=None, force_fp32=False, **model_kwargs):
        """Denoised estimate ``D(x; sigma)``.

        Parameters
        ----------
        x : torch.Tensor of shape (n, img_channels, R, R)
            Noisy images ``y + sigma * n``.
        sigma : torch.Tensor of shape (n,) or broadcastable
            VE noise std per sample.
        class_labels : torch.Tensor of shape (n, label_dim) or None, default=None
            One-hot rows; None gives a zero row (no class).
        force_fp32 : bool, default=False
            Run in float32 even when ``use_fp16``.
        **model_kwargs
            Passed to the raw network (``augment_labels``).

        Returns
        -------
        denoised : torch.Tensor of shape (n, img_channels, R, R), float32
        """
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, device=x.device).to(torch.float32).reshape(-1, 1, 1, 1)
        if self.label_dim == 0:
            class_labels = None
        elif class_labels is None:
            class_labels = torch.zeros([1, self.label_dim], device=x.device)
        else:
            class_labels = class_labels.to(torch.float32).reshape(-1, self.label_dim)
        fp16 = self.use_fp16 and not force_fp32 and x.device.type == "cuda"
        dtype = torch.float16 if fp16 else torch.float32
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        raw = self.model((c_in * x).to(dtype), c_noise.flatten(), class_labels=class_labels,
                         **model_kwargs)
        return c_skip * x + c_out * raw[:, :self.img_channels].to(torch.float32)

    def round_sigma(self, sigma):
        """Nearest supported noise level (identity except for iDDPM).

        Parameters
        ----------
        sigma : float or torch.Tensor

        Returns
        -------
        sigma : torch.Tensor
        """
        return torch.as_tensor(sigma)


class PrecondVP(_Precond):
    """Variance-preserving preconditioning (DDPM++ "VP" networks of the release).

    ``sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)``; the network is
    conditioned on ``(M - 1) t``.

    Parameters
    ----------
    img_resolution, img_channels : int
    label_dim : int, default=0
    use_fp16 : bool, default=False
    beta_d, beta_min : float, default=19.9, 0.1
    M : int, default=1000
    epsilon_t : float, default=1e-5
    model_type : {"SongUNet", "DhariwalUNet"}, default="SongUNet"
    **model_kwargs
        Arguments of the raw network.

    Examples
    --------
    >>> import torch
    >>> from skicr.models import PrecondVP
    >>> net = PrecondVP(16, 1, model_channels=16, channel_mult=(1, 2), num_blocks=1,
    ...                 attn_resolutions=(8,)).eval()
    >>> net(torch.zeros(2, 1, 16, 16), torch.tensor([0.5, 2.0])).shape
    torch.Size([2, 1, 16, 16])
    """

    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False, beta_d=19.9,
                 beta_min=0.1, M=1000, epsilon_t=1e-5, model_type="SongUNet", **model_kwargs):
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type,
                         model_kwargs)
        self.beta_d = float(beta_d)
        self.beta_min = float(beta_min)
        self.M = int(M)
        self.epsilon_t = float(epsilon_t)
        self.sigma_min = float(self.sigma(epsilon_t))
        self.sigma_max = float(self.sigma(1))

    def sigma(self, t):
        """Noise std at VP time ``t``.

        Parameters
        ----------
        t : float or torch.Tensor

        Returns
        -------
        sigma : torch.Tensor
        """
        t = torch.as_tensor(t)
        return ((0.5 * self.beta_d * t**2 + self.beta_min * t).exp() - 1).sqrt()

    def sigma_inv(self, sigma):
        """VP time of noise std ``sigma`` (inverse of :meth:`sigma`).

        Parameters
        ----------
        sigma : float or torch.Tensor

        Returns
        -------
        t : torch.Tensor
        """
        sigma = torch.as_tensor(sigma)
        root = (self.beta_min**2 + 2 * self.beta_d * (1 + sigma**2).log()).sqrt()
        return (root - self.beta_min) / self.beta_d

    def coefficients(self, sigma):
        return 1, -sigma, 1 / (sigma**2 + 1).sqrt(), (self.M - 1) * self.sigma_inv(sigma)


class PrecondVE(_Precond):
    """Variance-exploding preconditioning (NCSN++ "VE" networks of the release).

    Parameters
    ----------
    img_resolution, img_channels : int
    label_dim : int, default=0
    use_fp16 : bool, default=False
    sigma_min, sigma_max : float, default=0.02, 100
    model_type : {"SongUNet", "DhariwalUNet"}, default="SongUNet"
    **model_kwargs
    """

    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False,
                 sigma_min=0.02, sigma_max=100, model_type="SongUNet", **model_kwargs):
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type,
                         model_kwargs)
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max

    def coefficients(self, sigma):
        return 1, sigma, 1, (0.5 * sigma).log()


class PrecondIDDPM(_Precond):
    """Improved-DDPM preconditioning (the release's converted ADM baselines).

    The raw network has ``2 * img_channels`` outputs (mean and variance);
    the first half is used. Noise levels are the ``M + 1`` values ``u_j`` of
    the cosine schedule (buffer ``u``) and the network is conditioned on the
    index of the nearest one.

    Parameters
    ----------
    img_resolution, img_channels : int
    label_dim : int, default=0
    use_fp16 : bool, default=False
    C_1, C_2 : float, default=0.001, 0.008
    M : int, default=1000
    model_type : {"SongUNet", "DhariwalUNet"}, default="DhariwalUNet"
    **model_kwargs
    """

    _out_channel_factor = 2

    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False, C_1=0.001,
                 C_2=0.008, M=1000, model_type="DhariwalUNet", **model_kwargs):
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type,
                         model_kwargs)
        self.C_1 = float(C_1)
        self.C_2 = float(C_2)
        self.M = int(M)
        u = torch.zeros(self.M + 1)
        for j in range(self.M, 0, -1):
            ratio = (self.alpha_bar(j - 1) / self.alpha_bar(j)).clip(min=self.C_1)
            u[j - 1] = ((u[j] ** 2 + 1) / ratio - 1).sqrt()
        self.register_buffer("u", u)
        self.sigma_min = float(u[self.M - 1])
        self.sigma_max = float(u[0])

    def alpha_bar(self, j):
        """Cosine-schedule ``alpha_bar`` at step ``j``.

        Parameters
        ----------
        j : int or torch.Tensor

        Returns
        -------
        alpha_bar : torch.Tensor
        """
        j = torch.as_tensor(j)
        return (0.5 * np.pi * j / self.M / (self.C_2 + 1)).sin() ** 2

    def round_sigma(self, sigma, return_index=False):
        """Nearest schedule level ``u_j`` (or its index ``j``).

        Parameters
        ----------
        sigma : float or torch.Tensor
        return_index : bool, default=False

        Returns
        -------
        rounded : torch.Tensor
        """
        sigma = torch.as_tensor(sigma)
        distance = torch.cdist(sigma.to(self.u.device).to(torch.float32).reshape(1, -1, 1),
                               self.u.reshape(1, -1, 1))
        index = distance.argmin(2)
        result = index if return_index else self.u[index.flatten()].to(sigma.dtype)
        return result.reshape(sigma.shape).to(sigma.device)

    def coefficients(self, sigma):
        index = self.round_sigma(sigma, return_index=True).to(torch.float32)
        return 1, -sigma, 1 / (sigma**2 + 1).sqrt(), self.M - 1 - index


class PrecondEDM(_Precond):
    """EDM preconditioning (the release's ``edm-*`` networks).

    This is the layout of NVlabs' ``EDMPrecond`` (raw network under
    ``model``, called with one-hot class rows); skicr's own small denoiser
    uses :class:`skicr.models.EDMPrecond` instead.

    Parameters
    ----------
    img_resolution, img_channels : int
    label_dim : int, default=0
    use_fp16 : bool, default=False
    sigma_min, sigma_max : float, default=0, inf
    sigma_data : float, default=0.5
    model_type : {"SongUNet", "DhariwalUNet"}, default="DhariwalUNet"
    **model_kwargs

    Examples
    --------
    >>> import torch
    >>> from skicr.models import PrecondEDM
    >>> net = PrecondEDM(16, 3, label_dim=10, model_channels=32, channel_mult=(1, 2),
    ...                  num_blocks=1, attn_resolutions=(8,)).eval()
    >>> net(torch.zeros(2, 3, 16, 16), torch.tensor([0.5, 2.0]), torch.eye(10)[:2]).shape
    torch.Size([2, 3, 16, 16])
    """

    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False, sigma_min=0,
                 sigma_max=math.inf, sigma_data=0.5, model_type="DhariwalUNet", **model_kwargs):
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type,
                         model_kwargs)
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.sigma_data = float(sigma_data)

    def coefficients(self, sigma):
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sd**2 + sigma**2).sqrt()
        return c_skip, c_out, c_in, sigma.log() / 4
