"""Training losses of the other two parameterisations: VP epsilon prediction and flow matching.

Both take clean images in [-1, 1] and draw their time and noise from a
``torch.Generator`` on the CPU (then move them to the images' device), like
:func:`skicr.models.edm_loss`, so a seeded run does not depend on the device.

- VP / DDPM (Ho et al. 2020): ``t ~ U{0, ..., T-1}``,
  ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``, loss ``|eps_hat - eps|^2``
  with ``eps_hat = net(x_t, t)`` (a diffusers ``UNet2DModel`` returns a
  ``(sample,)`` tuple with ``return_dict=False``).
- Flow matching / rectified flow (Lipman et al. 2023, Liu et al. 2023):
  ``t ~ U(0, 1)``, ``x_t = (1 - t) x0 + t eps``, loss ``|v_hat - (eps - x0)|^2``
  with ``v_hat = net(x_t, t)``: the "noise at one" convention of
  :class:`skicr.extraction.FlowBackbone`.
"""

import numpy as np
import torch

__all__ = ["vp_epsilon_loss", "flow_matching_loss", "ddpm_alphas_cumprod"]


def _output(value):
    if isinstance(value, (tuple, list)):
        value = value[0]
    return getattr(value, "sample", value)


def _check_images(images):
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError("images must be a torch.Tensor of shape (batch, C, H, W) in [-1, 1].")


def ddpm_alphas_cumprod(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02):
    """``alphas_cumprod`` of DDPM's linear beta schedule (diffusers' ``DDPMScheduler`` default).

    Parameters
    ----------
    num_train_timesteps : int, default=1000
    beta_start, beta_end : float, default=1e-4, 0.02

    Returns
    -------
    alphas_cumprod : ndarray of shape (num_train_timesteps,), float64

    Examples
    --------
    >>> from skicr.models import ddpm_alphas_cumprod
    >>> abar = ddpm_alphas_cumprod()
    >>> abar.shape, bool(abar[0] > abar[-1])
    ((1000,), True)
    """
    betas = np.linspace(beta_start, beta_end, int(num_train_timesteps), dtype=np.float64)
    return np.cumprod(1.0 - betas)


def vp_epsilon_loss(net, images, alphas_cumprod, *, generator=None):
    """DDPM epsilon-prediction loss on a batch of clean images in [-1, 1].

    Parameters
    ----------
    net : torch.nn.Module
        Called as ``net(x_t, timesteps)`` (``timesteps`` long, shape (batch,));
        returns the predicted noise (a tensor, a tuple whose first item is it,
        or an object with ``.sample``).
    images : torch.Tensor of shape (batch, C, H, W)
        Clean images in [-1, 1].
    alphas_cumprod : array-like of shape (T,)
        The schedule, e.g. :func:`ddpm_alphas_cumprod` or a diffusers
        scheduler's ``alphas_cumprod``.
    generator : torch.Generator or None, default=None

    Returns
    -------
    loss : torch.Tensor
        Scalar mean squared error of the predicted noise.
    """
    _check_images(images)
    abar = torch.as_tensor(np.asarray(alphas_cumprod, dtype=np.float64))
    batch = images.shape[0]
    timesteps = torch.randint(0, abar.numel(), (batch,), generator=generator)
    noise = torch.randn(tuple(images.shape), generator=generator).to(images.device, images.dtype)
    a = abar[timesteps].to(images.device, images.dtype)[:, None, None, None]
    x_t = a.sqrt() * images + (1 - a).sqrt() * noise
    predicted = _output(net(x_t, timesteps.to(images.device)))
    return (predicted - noise).square().mean()


def flow_matching_loss(net, images, *, generator=None):
    """Rectified-flow velocity loss on a batch of clean images in [-1, 1].

    Parameters
    ----------
    net : torch.nn.Module
        Called as ``net(x_t, t)`` with ``t`` of shape (batch,) in [0, 1];
        returns the predicted velocity ``eps - x0``.
    images : torch.Tensor of shape (batch, C, H, W)
        Clean images in [-1, 1].
    generator : torch.Generator or None, default=None

    Returns
    -------
    loss : torch.Tensor
        Scalar mean squared error of the velocity.
    """
    _check_images(images)
    batch = images.shape[0]
    t = torch.rand(batch, generator=generator).to(images.device, images.dtype)
    noise = torch.randn(tuple(images.shape), generator=generator).to(images.device, images.dtype)
    x_t = (1 - t)[:, None, None, None] * images + t[:, None, None, None] * noise
    predicted = _output(net(x_t, t))
    return (predicted - (noise - images)).square().mean()
