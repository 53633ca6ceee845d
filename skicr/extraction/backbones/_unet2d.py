"""diffusers ``UNet2DModel`` (DDPM-style, variance preserving)."""

import os
from pathlib import Path

import torch

from ._base import Backbone, _batch_tensor
from ._diffusers import _is_diffusers, _load_diffusers_model, _scheduler_dir
from ._vp import _VPMixin

__all__ = ["UNet2DBackbone"]


class UNet2DBackbone(_VPMixin, Backbone):
    """diffusers ``UNet2DModel`` (DDPM-style, variance preserving).

    The network sees ``x_t = sqrt(abar) * (x0 + sigma * eps)`` with
    ``abar = 1 / (1 + sigma**2)`` and the scheduler timestep whose sigma is
    nearest to ``sigma``.

    Parameters
    ----------
    unet : diffusers.UNet2DModel or path
        An instance, or a local directory holding a saved ``UNet2DModel``
        (``config.json`` + weights, or a pipeline folder with ``unet/``).
    scheduler : scheduler, path, array or None, default=None
        Anything with ``alphas_cumprod`` (a diffusers scheduler), a directory
        holding a scheduler config, or the ``alphas_cumprod`` array. None uses
        the scheduler saved next to a checkpoint directory when there is one,
        else a default ``DDPMScheduler()`` (linear betas 1e-4..0.02, 1000
        steps: DDPM's CIFAR-10 schedule).
    class_label : int or None, default=None
        Class fed to class-conditional U-Nets (required for them).
    default_layer : str, default="mid_block"
    """

    def __init__(self, unet, scheduler=None, *, class_label=None, default_layer="mid_block"):
        if isinstance(unet, (str, os.PathLike)):
            path = Path(unet)
            unet = _load_diffusers_model(path, "UNet2DModel", subfolder="unet")
            if scheduler is None and _scheduler_dir(path) is not None:
                scheduler = path
        if not _is_diffusers(unet, "UNet2DModel"):
            raise TypeError(
                f"UNet2DBackbone needs a diffusers UNet2DModel; got {type(unet).__name__}."
            )
        super().__init__(unet, default_layer=default_layer)
        self._set_schedule(scheduler)
        self.class_label = class_label
        if getattr(unet, "class_embedding", None) is not None and class_label is None:
            raise ValueError(
                "This UNet2DModel is class-conditional; pass class_label=<int>."
            )

    def _model_in_channels(self):
        return int(self.module.config.in_channels)

    def forward(self, noisy, sigma):
        x_t, timesteps = self._vp_inputs(noisy, sigma)
        kwargs = {}
        if self.class_label is not None:
            kwargs["class_labels"] = _batch_tensor(self.class_label, x_t.shape[0], x_t.device, torch.long)
        return self.module(x_t.to(self.dtype), timesteps, return_dict=False, **kwargs)
