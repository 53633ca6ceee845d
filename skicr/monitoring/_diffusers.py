"""Samples of a diffusers model through a diffusers scheduler, for the memorization ratio."""

import copy
from numbers import Integral

import numpy as np

__all__ = ["SchedulerSampler"]


class SchedulerSampler:
    """Draw samples from a diffusers ``UNet2DModel`` with a diffusers scheduler, fixed seed.

    The sampler of :class:`~skicr.monitoring.ICRMonitor`'s memorization ratio
    when the monitored model is not an EDM network: ``sampler(model)`` runs
    ``scheduler.set_timesteps(n_steps)`` then ``scheduler.step`` on the
    model's prediction (noise, sample or v, as the scheduler's
    ``prediction_type`` says), from the same starting noise at every call, and
    returns images in [0, 1]. The scheduler is copied, so the training
    script's own scheduler is never modified.

    Parameters
    ----------
    scheduler : diffusers scheduler
        Anything with ``set_timesteps``, ``timesteps``, ``step`` and
        ``init_noise_sigma`` (``DDPMScheduler``, ``DDIMScheduler``, ...).
    n_samples : int
        Samples per call.
    image_shape : tuple of 3 int
        ``(C, H, W)`` of the samples.
    n_steps : int, default=50
        Sampling steps (``set_timesteps``).
    seed : int, default=0
        Seed of the starting noise and of the schedulers' own noise.
    batch_size : int, default=64
        Samples per forward pass.
    device : str, torch.device or None, default=None
        Where to sample; None: the model's device.

    Examples
    --------
    >>> from diffusers import DDIMScheduler, UNet2DModel
    >>> from skicr.monitoring import SchedulerSampler
    >>> unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
    ...                    block_out_channels=(8, 16), norm_num_groups=4,
    ...                    down_block_types=("DownBlock2D", "DownBlock2D"),
    ...                    up_block_types=("UpBlock2D", "UpBlock2D"))
    >>> sampler = SchedulerSampler(DDIMScheduler(), n_samples=3, image_shape=(1, 8, 8),
    ...                            n_steps=4)
    >>> sampler(unet).shape
    (3, 1, 8, 8)
    """

    def __init__(self, scheduler, n_samples, image_shape, *, n_steps=50, seed=0, batch_size=64,
                 device=None):
        for attribute in ("set_timesteps", "step"):
            if not callable(getattr(scheduler, attribute, None)):
                raise TypeError(
                    f"scheduler must be a diffusers scheduler (with set_timesteps and step); "
                    f"{type(scheduler).__name__} has no {attribute}."
                )
        for name, value, low in (("n_samples", n_samples, 1), ("n_steps", n_steps, 1),
                                 ("seed", seed, 0), ("batch_size", batch_size, 1)):
            if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an int >= {low}; got {value!r}.")
        image_shape = tuple(image_shape)
        if len(image_shape) != 3 or not all(isinstance(s, Integral) and s > 0
                                            for s in image_shape):
            raise ValueError(f"image_shape must be (C, H, W) of positive ints; got {image_shape}.")
        self.scheduler = scheduler
        self.n_samples, self.image_shape = int(n_samples), image_shape
        self.n_steps, self.seed, self.batch_size = int(n_steps), int(seed), int(batch_size)
        self.device = device

    def __call__(self, model):
        """Samples of ``model`` in [0, 1], shape ``(n_samples, C, H, W)``.

        Parameters
        ----------
        model : diffusers.UNet2DModel, torch.nn.Module or skicr Backbone
            Called as ``model(x_t, t)``; its output's ``.sample`` (or the
            output itself) is the prediction the scheduler expects. An
            adapter (:class:`~skicr.extraction.UNet2DBackbone`) stands for its
            network.

        Returns
        -------
        samples : ndarray of shape (n_samples, C, H, W), float32
        """
        import torch

        from ..extraction import Backbone

        if isinstance(model, Backbone):  # a skicr adapter (UNet2DBackbone): its network
            model = model.module
        device = self.device
        if device is None:
            device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        scheduler = copy.deepcopy(self.scheduler)
        scheduler.set_timesteps(self.n_steps)
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        noise = torch.randn((self.n_samples, *self.image_shape), generator=generator)
        was_training = model.training
        model.eval()
        out = []
        try:
            with torch.no_grad():
                for start in range(0, self.n_samples, self.batch_size):
                    x = (noise[start:start + self.batch_size] * scheduler.init_noise_sigma)
                    x = x.to(device=device, dtype=dtype)
                    for t in scheduler.timesteps:
                        model_input = scheduler.scale_model_input(x, t) if hasattr(
                            scheduler, "scale_model_input") else x
                        prediction = model(model_input, t)
                        prediction = getattr(prediction, "sample", prediction)
                        x = scheduler.step(prediction, t, x, generator=generator).prev_sample
                    out.append(((x.float().cpu() + 1) / 2).clamp(0, 1).numpy())
        finally:
            model.train(was_training)
        samples = np.concatenate(out).astype(np.float32)
        if not np.all(np.isfinite(samples)):
            raise FloatingPointError("the model produced NaN or infinite samples.")
        return samples

    def __repr__(self):
        return (f"SchedulerSampler({type(self.scheduler).__name__}, n_samples={self.n_samples}, "
                f"image_shape={self.image_shape}, n_steps={self.n_steps}, seed={self.seed})")
