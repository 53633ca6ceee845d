"""EDM preconditioning and training loss (Karras et al. 2022, Table 1).

Images live in [-1, 1]; sigma is the VE noise std in that range:
``x_noisy = x + sigma * eps``. With ``sigma_data = 0.5``::

    c_skip  = sigma_data^2 / (sigma^2 + sigma_data^2)
    c_out   = sigma * sigma_data / sqrt(sigma^2 + sigma_data^2)
    c_in    = 1 / sqrt(sigma^2 + sigma_data^2)
    c_noise = ln(sigma) / 4
    D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)

Training draws ``ln(sigma) ~ N(P_mean, P_std^2)`` and weights the squared
error by ``lambda(sigma) = 1 / c_out^2``, which makes the loss the plain MSE
of ``F`` against its effective target (about 1 at initialisation, F = 0).
"""

import torch
from torch import nn

from .._utils.validation import check_sigma

__all__ = [
    "SIGMA_DATA",
    "P_MEAN",
    "P_STD",
    "EDMPrecond",
    "edm_preconditioning",
    "edm_loss",
]

#: Assumed std of the data (images in [-1, 1]), EDM's ``sigma_data``.
SIGMA_DATA = 0.5
#: Mean of ``ln(sigma)`` in the EDM training loss.
P_MEAN = -1.2
#: Std of ``ln(sigma)`` in the EDM training loss.
P_STD = 1.2


def _check_sigma_values(sigma):
    """Refuse noise levels outside :data:`SIGMA_RANGE`, before a float32 cast hides them.

    In float32, ``1e300`` would become ``inf`` and ``1e-300`` zero; the values are
    read in float64 (a NaN anywhere makes the minimum NaN, which is refused).
    """
    if torch.is_tensor(sigma):
        values = sigma.detach().to("cpu", torch.float64).reshape(-1)  # MPS has no float64
    else:
        values = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
    if values.numel():
        for value in (float(values.min()), float(values.max())):
            check_sigma(value)


def _as_sigma(sigma, batch, like):
    """sigma as a float tensor of shape (batch,), checked positive, finite and in range."""
    _check_sigma_values(sigma)
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(batch)
    sigma = sigma.reshape(-1)
    if sigma.shape[0] != batch:
        raise ValueError(
            f"sigma must be a scalar or have one value per image ({batch}); "
            f"got shape {tuple(sigma.shape)}."
        )
    return sigma


def edm_preconditioning(sigma, sigma_data=SIGMA_DATA):
    """EDM preconditioning coefficients for noise levels ``sigma``.

    Parameters
    ----------
    sigma : float or torch.Tensor
        Noise std (VE, data in [-1, 1]), in ``[1e-18, 1e18]`` (beyond it
        ``sigma**2`` leaves float32's range).
    sigma_data : float, default=0.5
        Assumed std of the data.

    Returns
    -------
    c_skip, c_out, c_in, c_noise : torch.Tensor
        Tensors shaped like ``sigma``; ``D(x) = c_skip x + c_out F(c_in x, c_noise)``.

    Examples
    --------
    >>> from skicr.models import edm_preconditioning
    >>> c_skip, c_out, c_in, c_noise = edm_preconditioning(0.5)
    >>> round(float(c_skip), 4), round(float(c_in), 4)
    (0.5, 1.4142)
    """
    _check_sigma_values(sigma)
    sigma = torch.as_tensor(sigma, dtype=torch.get_default_dtype())
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / total.sqrt()
    c_in = 1 / total.sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


class EDMPrecond(nn.Module):
    """The EDM denoiser ``D(x; sigma)`` around a raw network ``F``.

    Parameters
    ----------
    net : torch.nn.Module
        Raw network called as ``net(c_in * x, c_noise)`` with ``c_noise`` of
        shape (batch,), returning a tensor shaped like ``x`` (e.g.
        :class:`~skicr.models.SmallUNet`).
    sigma_data : float, default=0.5
        Assumed std of the data (images in [-1, 1]).

    Examples
    --------
    >>> import torch
    >>> from skicr.models import EDMPrecond, SmallUNet
    >>> denoiser = EDMPrecond(SmallUNet())
    >>> x = torch.zeros(2, 1, 16, 16)
    >>> denoiser(x, torch.tensor([0.1, 1.0])).shape
    torch.Size([2, 1, 16, 16])
    """

    def __init__(self, net, sigma_data=SIGMA_DATA):
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module; got {type(net).__name__}.")
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0; got {sigma_data!r}.")
        self.net = net
        self.sigma_data = float(sigma_data)

    def __skicr_backbone__(self):
        # the feature extractor's adapter (skicr.extraction.as_backbone's hook): called as
        # net(x, sigma), layers under "net." (the default one is the inner network's)
        from skicr.extraction import EDMBackbone

        inner = EDMBackbone(self.net).default_layer
        return EDMBackbone(self, sigma_data=self.sigma_data, call="preconditioned",
                           default_layer=f"net.{inner}" if inner else None)

    def forward(self, x, sigma):
        """Denoise ``x`` at noise level ``sigma``.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, C, H, W)
            Noisy images ``x0 + sigma * eps`` (x0 in [-1, 1]).
        sigma : float or torch.Tensor of shape (batch,)
            Noise std, > 0.

        Returns
        -------
        denoised : torch.Tensor of shape (batch, C, H, W)
            ``D(x; sigma)``, an estimate of the clean image in [-1, 1].
        """
        sigma = _as_sigma(sigma, x.shape[0], x)
        c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, self.sigma_data)
        c_skip, c_out, c_in = (c.to(x.dtype)[:, None, None, None] for c in (c_skip, c_out, c_in))
        f = self.net(c_in * x, c_noise.to(x.dtype))
        return c_skip * x + c_out * f


def edm_loss(
    denoiser,
    images,
    *,
    generator=None,
    P_mean=P_MEAN,
    P_std=P_STD,
):
    """EDM training loss on a batch of clean images in [-1, 1].

    ``ln(sigma) ~ N(P_mean, P_std^2)`` per image, ``x = images + sigma * eps``,
    loss ``= mean(lambda(sigma) * (D(x; sigma) - images)^2)`` with
    ``lambda = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2``.

    Parameters
    ----------
    denoiser : EDMPrecond
        The preconditioned denoiser (its ``sigma_data`` is used for the weight).
    images : torch.Tensor of shape (batch, C, H, W)
        Clean images in [-1, 1].
    generator : torch.Generator or None, default=None
        Source of sigma and noise (drawn on the CPU, then moved to the images'
        device, so results do not depend on the device's generator). ``None``
        uses the global generator.
    P_mean, P_std : float, default=-1.2, 1.2
        Mean and std of ``ln(sigma)``.

    Returns
    -------
    loss : torch.Tensor
        Scalar: the weighted squared error averaged over images and pixels.

    Examples
    --------
    >>> import torch
    >>> from skicr.models import EDMPrecond, SmallUNet, edm_loss
    >>> denoiser = EDMPrecond(SmallUNet(channels=(8, 16), mid_channels=16))
    >>> images = torch.rand(4, 1, 16, 16) * 2 - 1        # in [-1, 1]
    >>> loss = edm_loss(denoiser, images, generator=torch.Generator().manual_seed(0))
    >>> loss.ndim, bool(loss > 0)
    (0, True)
    """
    if not isinstance(denoiser, EDMPrecond):
        raise TypeError(
            f"edm_loss needs an EDMPrecond denoiser; got {type(denoiser).__name__}. "
            "Wrap a raw network as EDMPrecond(net)."
        )
    if images.ndim != 4:
        raise ValueError(f"images must be (batch, C, H, W); got shape {tuple(images.shape)}.")
    batch = images.shape[0]
    log_sigma = torch.randn(batch, generator=generator) * P_std + P_mean
    noise = torch.randn(tuple(images.shape), generator=generator)
    sigma = log_sigma.exp().to(images.device, images.dtype)
    noise = noise.to(images.device, images.dtype)
    sd = denoiser.sigma_data
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    denoised = denoiser(images + sigma[:, None, None, None] * noise, sigma)
    return (weight[:, None, None, None] * (denoised - images) ** 2).mean()
