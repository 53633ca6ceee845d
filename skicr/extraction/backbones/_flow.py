"""Flow-matching / rectified-flow networks (SiT and the like)."""

import os
from pathlib import Path

import torch

from .._noise import FLOW_TIME_CONVENTIONS, flow_input_scale, flow_time_to_sigma, sigma_to_flow_time
from ._base import Backbone, _batch_tensor
from ._diffusers import _load_diffusers_model

__all__ = ["FlowBackbone"]


class FlowBackbone(Backbone):
    """Flow-matching / rectified-flow networks (SiT and the like).

    The network sees ``x_t = (1 - t) * (x0 + sigma * eps)`` with
    ``t = sigma / (1 + sigma)``, and is called as ``module(x_t, time)`` or
    ``module(x_t, time, y)`` where ``time`` (shape (n,)) follows the model's
    convention.

    Parameters
    ----------
    module : torch.nn.Module
    time_convention : {"noise_at_one", "data_at_one"}, default="noise_at_one"
        ``"noise_at_one"``: ``x_t = (1 - t) x0 + t eps`` (rectified flow,
        diffusers' flow-matching schedulers). ``"data_at_one"``:
        ``x_t = t x0 + (1 - t) eps`` (SiT's linear path), so the network is
        fed ``1 - t``.
    time_scale : float, default=1.0
        Multiplies the time fed to the network (1000 for diffusers
        transformers that take ``t * num_train_timesteps``).
    class_label : int or None, default=None
        Third argument ``y`` when not None (SiT's null class is 1000).
    vae : diffusers.AutoencoderKL or None, default=None
        Encoder for latent models (SiT-XL/2 uses ``sd-vae-ft-ema``).
    in_channels : int or None, default=None
    default_layer : str or None, default=None
        None guesses (the middle of ``blocks`` for SiT).

    Examples
    --------
    A toy velocity network called as ``module(x_t, time)``:

    >>> import numpy as np
    >>> import torch
    >>> from skicr.extraction import FeatureExtractor, FlowBackbone
    >>> class Velocity(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.body = torch.nn.Conv2d(1, 4, 3, padding=1)
    ...         self.head = torch.nn.Conv2d(4, 1, 3, padding=1)
    ...     def forward(self, x, time):
    ...         return self.head(torch.relu(self.body(x)))
    >>> backbone = FlowBackbone(Velocity(), default_layer="body")
    >>> images = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    >>> FeatureExtractor(backbone, sigma=0.5, n_views=2, random_state=0).fit(
    ...     images).transform_views(images).shape
    (5, 2, 4)
    """

    def __init__(self, module, time_convention="noise_at_one", time_scale=1.0, *,
                 class_label=None, vae=None, in_channels=None, default_layer=None):
        if isinstance(vae, (str, os.PathLike)):
            vae = _load_diffusers_model(Path(vae), "AutoencoderKL", subfolder="vae")
        super().__init__(module, vae=vae, in_channels=in_channels, default_layer=default_layer)
        if time_convention not in FLOW_TIME_CONVENTIONS:
            raise ValueError(
                f"time_convention must be one of {FLOW_TIME_CONVENTIONS}; got {time_convention!r}."
            )
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0; got {time_scale!r}.")
        self.time_convention = time_convention
        self.time_scale = float(time_scale)
        self.class_label = class_label

    def time(self, sigma):
        """Time fed to the network for ``sigma`` (convention and scale applied).

        Parameters
        ----------
        sigma : float

        Returns
        -------
        time : float
        """
        return sigma_to_flow_time(sigma, self.time_convention) * self.time_scale

    def sigma_at(self, time):
        """Inverse of :meth:`time`.

        Parameters
        ----------
        time : float

        Returns
        -------
        sigma : float
        """
        return flow_time_to_sigma(time / self.time_scale, self.time_convention)

    def forward(self, noisy, sigma):
        batch, device, dtype = noisy.shape[0], noisy.device, self.dtype
        x_t = (noisy * flow_input_scale(sigma)).to(dtype)
        args = [_batch_tensor(self.time(sigma), batch, device, dtype)]
        if self.class_label is not None:
            args.append(_batch_tensor(self.class_label, batch, device, torch.long))
        return self.module(x_t, *args)
