"""DiT and SiT release networks (``DiT-XL-2-256x256.pt``, ``SiT-XL-2-256x256.pt``).

The networks are :class:`skicr.models.DiT` and :class:`skicr.models.SiT`
(this module does not import :mod:`skicr.models`, which builds on this
package; the networks are recognised by their interface). Both work in the
SD-VAE latent space: give a local diffusers ``AutoencoderKL`` folder as
``vae`` for pixels, or latents directly.

- SiT takes ``x_t = t x1 + (1 - t) x0`` with t = 0 noise and t = 1 data
  (the official linear path), so ``t = 1 / (1 + sigma)`` and
  ``x_t = (x0 + sigma eps) / (1 + sigma)``; it predicts the velocity.
- DiT takes ``x_t = sqrt(abar) (x0 + sigma eps)`` and the integer DDPM
  timestep of its linear schedule (1000 steps, betas 1e-4 .. 0.02) whose
  sigma is nearest to ``sigma`` in log space.
"""

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .._noise import sigma_to_vp_timestep, vp_sigmas
from ._base import Backbone, _batch_tensor
from ._diffusers import _load_diffusers_model
from ._edm_release import _check_class_label
from ._flow import FlowBackbone
from ._vp import _VPMixin

__all__ = ["SiTReleaseBackbone", "DiTReleaseBackbone", "dit_linear_alphas_cumprod"]


def dit_linear_alphas_cumprod(n_steps=1000, beta_start=1e-4, beta_end=0.02):
    """``alphas_cumprod`` of DiT's linear DDPM schedule (float64, as the release).

    Parameters
    ----------
    n_steps : int, default=1000
    beta_start, beta_end : float, default=1e-4, 0.02
        For ``n_steps`` other than 1000 the release scales both by
        ``1000 / n_steps``; so does this function.

    Returns
    -------
    alphas_cumprod : numpy.ndarray of shape (n_steps,)

    Examples
    --------
    >>> from skicr.extraction import dit_linear_alphas_cumprod
    >>> abar = dit_linear_alphas_cumprod()
    >>> abar.shape, round(float(abar[0]), 6)
    ((1000,), 0.9999)
    """
    scale = 1000 / int(n_steps)
    betas = np.linspace(scale * beta_start, scale * beta_end, int(n_steps), dtype=np.float64)
    return np.cumprod(1.0 - betas)


class _LatentInputMixin:
    """Without a VAE the inputs are latents: the extractor's [-1, 1] data times ``latent_scale``."""

    def _set_latent_scale(self, latent_scale):
        if not (isinstance(latent_scale, (int, float)) and np.isfinite(latent_scale)
                and latent_scale > 0):
            raise ValueError(f"latent_scale must be a finite number > 0; got {latent_scale!r}.")
        if self.vae is not None and latent_scale != 1.0:
            raise ValueError("latent_scale applies to latent inputs; with a vae leave it at 1.")
        self.latent_scale = float(latent_scale)

    def prepare(self, images):
        if self.vae is not None:
            return super().prepare(images)
        return images * self.latent_scale


_TIME_INPUTS = {"DiT": "ddpm_timestep", "SiT": "flow_time_data_at_one"}


def _check_transformer(net, adapter, family):
    if getattr(net, "time_input", None) != _TIME_INPUTS[family] or not all(
            hasattr(net, name) for name in ("blocks", "null_class", "num_classes")):
        raise TypeError(
            f"{adapter} needs a skicr.models.{family} (skicr.load_backbone reads the release "
            f"files); got {type(net).__name__}."
        )


def _transformer_defaults(net, class_label, what):
    null = net.null_class
    if class_label is None:
        if null is None:
            raise ValueError(f"This {what} has no null class; pass class_label=<int>.")
        class_label = null
    return _check_class_label(class_label, net.num_classes, null, what)


class SiTReleaseBackbone(_LatentInputMixin, FlowBackbone):
    """A SiT release network (``SiT-XL-2-256x256.pt``), rebuilt by skicr.

    The network sees ``x_t = (x0 + sigma eps) / (1 + sigma)`` and
    ``t = 1 / (1 + sigma)`` (SiT's linear path, t = 0 noise, t = 1 data);
    its output is the velocity.

    Parameters
    ----------
    net : skicr.models.SiT
    vae : diffusers.AutoencoderKL, path or None, default=None
        Encoder from pixels to latents (SiT-XL/2 was trained on
        ``sd-vae-ft-ema`` latents times 0.18215); a local diffusers folder is
        loaded. None: the inputs are latents already.
    class_label : int or None, default=None
        None means the null class (``num_classes``) of classifier-free
        guidance.
    default_layer : str or None, default=None
        None means the middle block, ``blocks.{depth // 2}``.
    latent_scale : float, default=1.0
        Without a VAE: the extractor's inputs (in [0, 1], mapped to [-1, 1])
        are multiplied by this to give the latents, so latents ``z`` with
        ``|z| <= latent_scale`` are given as ``(z / latent_scale + 1) / 2``.
    """

    def __init__(self, net, *, vae=None, class_label=None, default_layer=None,
                 latent_scale=1.0):
        _check_transformer(net, "SiTReleaseBackbone", "SiT")
        class_label = _transformer_defaults(net, class_label, "SiT")
        super().__init__(
            net, "data_at_one", class_label=class_label, vae=vae,
            default_layer=default_layer or f"blocks.{len(net.blocks) // 2}",
        )
        self._set_latent_scale(latent_scale)


class DiTReleaseBackbone(_LatentInputMixin, _VPMixin, Backbone):
    """A DiT release network (``DiT-XL-2-256x256.pt``), rebuilt by skicr.

    The network sees ``x_t = sqrt(abar) (x0 + sigma eps)``,
    ``abar = 1 / (1 + sigma**2)``, and the integer timestep of the linear
    1000-step schedule whose sigma is nearest to ``sigma`` (log space); a
    sigma outside the schedule's range (about [0.01, 157]) is clamped to
    the end timestep with a warning. :meth:`timestep` and :meth:`sigma_at`
    report the mapping.

    Parameters
    ----------
    net : skicr.models.DiT
    vae : diffusers.AutoencoderKL, path or None, default=None
        As for :class:`SiTReleaseBackbone`.
    scheduler : scheduler, path, array or None, default=None
        None is DiT's linear schedule (:func:`dit_linear_alphas_cumprod`).
    class_label : int or None, default=None
        None means the null class.
    default_layer : str or None, default=None
        None means the middle block, ``blocks.{depth // 2}``.
    latent_scale : float, default=1.0
        As for :class:`SiTReleaseBackbone`.
    """

    def __init__(self, net, *, vae=None, scheduler=None, class_label=None, default_layer=None,
                 latent_scale=1.0):
        _check_transformer(net, "DiTReleaseBackbone", "DiT")
        if isinstance(vae, (str, os.PathLike)):
            vae = _load_diffusers_model(Path(vae), "AutoencoderKL", subfolder="vae")
        super().__init__(net, vae=vae,
                         default_layer=default_layer or f"blocks.{len(net.blocks) // 2}")
        self._set_schedule(dit_linear_alphas_cumprod() if scheduler is None else scheduler)
        self.class_label = _transformer_defaults(net, class_label, "DiT")
        self._set_latent_scale(latent_scale)

    def check_sigma(self, sigma):
        sigmas = vp_sigmas(self.alphas_cumprod)
        inside = sigmas.min() * (1 - 1e-6) <= sigma <= sigmas.max() * (1 + 1e-6)
        timestep = sigma_to_vp_timestep(sigma, self.alphas_cumprod, warn=True)  # warns outside
        used = float(sigmas[timestep])
        if inside and abs(math.log(used / sigma)) > 0.05:
            warnings.warn(
                f"sigma={sigma:g} runs DiT at timestep {timestep} (sigma {used:.4g}), the "
                "nearest of its 1000-step schedule.",
                UserWarning,
                stacklevel=3,
            )

    def forward(self, noisy, sigma):
        x_t, timesteps = self._vp_inputs(noisy, sigma)
        labels = _batch_tensor(self.class_label, x_t.shape[0], x_t.device, torch.long)
        return self.module(x_t.to(self.dtype), timesteps, labels)
