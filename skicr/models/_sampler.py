"""EDM's deterministic Heun sampler (Karras et al. 2022, Algorithm 1)."""

from numbers import Integral

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._edm import SIGMA_DATA, EDMPrecond

__all__ = ["edm_sigma_steps", "edm_sampler"]


def edm_sigma_steps(n_steps=18, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    """The EDM noise schedule, ending with 0.

    ``sigma_i = (sigma_max^(1/rho) + i / (n_steps - 1) * (sigma_min^(1/rho) -
    sigma_max^(1/rho)))^rho`` for ``i = 0 .. n_steps - 1``, then ``sigma_N = 0``.

    Parameters
    ----------
    n_steps : int, default=18
        Number of noise levels (>= 2); the sampler makes ``2 * n_steps - 1``
        network evaluations.
    sigma_min, sigma_max : float, default=0.002, 80
        Smallest and largest noise levels, ``0 < sigma_min < sigma_max``.
    rho : float, default=7
        Schedule curvature (larger spends more steps at small sigma).

    Returns
    -------
    sigmas : torch.Tensor of shape (n_steps + 1,), float64
        Decreasing noise levels, last one 0.

    Examples
    --------
    >>> from skicr.models import edm_sigma_steps
    >>> steps = edm_sigma_steps(4)
    >>> len(steps), float(steps[0]), float(steps[-1])   # from sigma_max down, then 0
    (5, 80.0, 0.0)
    """
    if not isinstance(n_steps, Integral) or isinstance(n_steps, bool) or n_steps < 2:
        raise ValueError(f"n_steps must be an int >= 2; got {n_steps!r}.")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(
            f"need 0 < sigma_min < sigma_max; got sigma_min={sigma_min!r}, "
            f"sigma_max={sigma_max!r}."
        )
    if not rho > 0:
        raise ValueError(f"rho must be > 0; got {rho!r}.")
    i = torch.arange(n_steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + i / (n_steps - 1) * (lo - hi)) ** rho
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])


def _as_generator(seed):
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        return torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))
    if isinstance(seed, Integral) and not isinstance(seed, bool) and seed >= 0:
        return torch.Generator().manual_seed(int(seed))
    raise ValueError(f"seed must be None, an int >= 0 or a torch.Generator; got {seed!r}.")


@torch.no_grad()
def edm_sampler(
    net,
    n_samples=64,
    *,
    n_steps=18,
    sigma_min=0.002,
    sigma_max=80.0,
    rho=7.0,
    image_shape=None,
    batch_size=256,
    seed=None,
    progress=True,
    device=None,
):
    """Generate images with EDM's deterministic Heun sampler.

    Algorithm 1 of Karras et al. (2022): start from ``sigma_max * eps``, take
    Euler steps of the probability-flow ODE ``dx/dsigma = (x - D(x; sigma)) /
    sigma`` along :func:`edm_sigma_steps`, each corrected by Heun's method
    except the last (to sigma = 0). The ODE state is kept in float64, the
    network runs in its own dtype. All initial noise is drawn up front from
    one generator, so the output does not depend on ``batch_size``.

    Parameters
    ----------
    net : torch.nn.Module
        The raw network ``F`` (as returned by :func:`load_pretrained` or
        :func:`train_denoiser`), wrapped here in :class:`EDMPrecond`, or an
        :class:`EDMPrecond` denoiser.
    n_samples : int, default=64
        Number of images.
    n_steps : int, default=18
        Noise levels of the schedule (``2 * n_steps - 1`` network evaluations).
    sigma_min, sigma_max, rho : float, default=0.002, 80, 7
        Schedule (see :func:`edm_sigma_steps`).
    image_shape : tuple (C, H, W) or None, default=None
        Shape of one image; ``None`` reads ``(net.in_channels, net.image_size,
        net.image_size)`` (set on :class:`SmallUNet`).
    batch_size : int, default=256
        Images per network call.
    seed : int, torch.Generator or None, default=None
        Source of the initial noise (CPU generator). The same int gives the
        same images.
    progress : bool, default=True
        Show a tqdm progress bar over the sampling steps.
    device : str, torch.device or None, default=None
        Where to run (the network is moved there); ``None`` means the
        network's device.

    Returns
    -------
    images : ndarray of shape (n_samples, C, H, W), float32
        Samples mapped from [-1, 1] to [0, 1] and clipped: the layout of
        :func:`skicr.datasets.load_digits_images`.

    Examples
    --------
    >>> from skicr.models import load_pretrained, edm_sampler
    >>> net = load_pretrained("digits")
    >>> samples = edm_sampler(net, 4, n_steps=4, seed=0, progress=False)
    >>> samples.shape
    (4, 1, 16, 16)
    """
    if isinstance(net, EDMPrecond):
        denoiser, raw = net, net.net
    elif isinstance(net, nn.Module):
        denoiser, raw = EDMPrecond(net, sigma_data=SIGMA_DATA), net
    else:
        raise TypeError(f"net must be a torch.nn.Module; got {type(net).__name__}.")
    if not isinstance(n_samples, Integral) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"n_samples must be an int >= 1; got {n_samples!r}.")
    if not isinstance(batch_size, Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}.")
    if image_shape is None:
        if not (hasattr(raw, "in_channels") and hasattr(raw, "image_size")):
            raise ValueError(
                f"cannot infer the image shape from {type(raw).__name__}; "
                "pass image_shape=(C, H, W)."
            )
        image_shape = (raw.in_channels, raw.image_size, raw.image_size)
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (C, H, W) of positive ints; got {image_shape}.")
    sigmas = edm_sigma_steps(n_steps, sigma_min, sigma_max, rho)
    generator = _as_generator(seed)

    first = next(raw.parameters(), None)
    dtype = first.dtype if first is not None else torch.float32
    if device is None:
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    denoiser.to(device)
    was_training = denoiser.training
    denoiser.eval()

    latents = torch.randn((n_samples, *image_shape), generator=generator, dtype=torch.float64)

    def denoise(x, sigma):
        sigma_batch = torch.full((x.shape[0],), sigma, device=device, dtype=dtype)
        return denoiser(x.to(dtype), sigma_batch).to(torch.float64)

    out = []
    n_batches = -(-n_samples // batch_size)
    bar = tqdm(total=n_batches * n_steps, disable=not progress, desc="EDM sampler")
    try:
        for start in range(0, n_samples, batch_size):
            x = latents[start : start + batch_size].to(device) * sigmas[0]
            steps = sigmas.tolist()
            for t_cur, t_next in zip(steps[:-1], steps[1:]):
                d_cur = (x - denoise(x, t_cur)) / t_cur
                x_next = x + (t_next - t_cur) * d_cur
                if t_next > 0:  # Heun correction
                    d_next = (x_next - denoise(x_next, t_next)) / t_next
                    x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_next)
                x = x_next
                bar.update(1)
            out.append(x.cpu())
    finally:
        bar.close()
        denoiser.train(was_training)
    images = (torch.cat(out) + 1) / 2
    return np.clip(images.numpy(), 0.0, 1.0).astype(np.float32)
