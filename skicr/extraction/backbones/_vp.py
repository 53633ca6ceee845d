"""Variance-preserving (DDPM) schedules: sigma <-> timestep of the scheduler."""

import os
from pathlib import Path

import numpy as np
import torch

from .._noise import sigma_to_vp_timestep, vp_input_scale, vp_timestep_to_sigma
from ._base import _batch_tensor
from ._diffusers import _load_scheduler

__all__ = []


class _VPMixin:
    """Maps sigma to the nearest timestep of a VP schedule."""

    def _set_schedule(self, scheduler):
        self.alphas_cumprod = _resolve_alphas_cumprod(scheduler)

    def timestep(self, sigma, *, warn=True):
        """Timestep fed to the network for ``sigma`` (nearest in log sigma).

        Parameters
        ----------
        sigma : float
        warn : bool, default=True

        Returns
        -------
        timestep : int
        """
        return sigma_to_vp_timestep(sigma, self.alphas_cumprod, warn=warn)

    def sigma_at(self, timestep):
        """VE sigma of ``timestep``.

        Parameters
        ----------
        timestep : int

        Returns
        -------
        sigma : float
        """
        return vp_timestep_to_sigma(timestep, self.alphas_cumprod)

    def check_sigma(self, sigma):
        self.timestep(sigma, warn=True)

    def _vp_inputs(self, noisy, sigma):
        x_t = noisy * vp_input_scale(sigma)
        timestep = self.timestep(sigma, warn=False)
        timesteps = _batch_tensor(timestep, noisy.shape[0], noisy.device, torch.long)
        return x_t, timesteps


def _resolve_alphas_cumprod(scheduler):
    if scheduler is None:
        from diffusers import DDPMScheduler

        scheduler = DDPMScheduler()
    elif isinstance(scheduler, (str, os.PathLike)):
        scheduler = _load_scheduler(Path(scheduler))
    values = getattr(scheduler, "alphas_cumprod", scheduler)
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            "scheduler must be None, a diffusers scheduler with alphas_cumprod, a "
            f"directory holding a scheduler config, or an array; got {type(scheduler).__name__}."
        ) from exc
    if values.ndim != 1 or values.size < 2 or np.any(~np.isfinite(values)) \
            or np.any(values <= 0) or np.any(values > 1):
        raise ValueError(
            "alphas_cumprod must be a 1-D array of at least two values in (0, 1]; "
            f"got shape {values.shape}."
        )
    return values
