"""Training of the small EDM denoiser: EDM loss, Adam, EMA of the weights."""

import copy
import time
from numbers import Integral, Real
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from .._utils.images import model_range_images

from ._edm import P_MEAN, P_STD, SIGMA_DATA, EDMPrecond, edm_loss
from ._unet import SmallUNet

__all__ = ["TrainingResult", "train_denoiser", "images_to_tensor"]

class TrainingResult(NamedTuple):
    """Output of :func:`train_denoiser`.

    Attributes
    ----------
    ema_net : torch.nn.Module
        EMA of the weights, in eval mode: the network to use.
    net : torch.nn.Module
        The raw trained weights (last optimizer step), in train mode.
    history : dict
        ``{"step": [...], "loss": [...], "lr": [...], "seconds": float,
        "stopped_early": bool}``; ``loss[i]`` is the training loss of optimizer
        step ``step[i]``.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.models import SmallUNet, train_denoiser
    >>> images = np.random.default_rng(0).random((16, 1, 16, 16), dtype=np.float32)
    >>> result = train_denoiser(images, n_steps=3, batch_size=4, progress=False,
    ...                         net=SmallUNet(channels=(8, 16), mid_channels=16))
    >>> len(result.history["loss"]), type(result.ema_net).__name__
    (3, 'SmallUNet')
    """

    ema_net: torch.nn.Module
    net: torch.nn.Module
    history: dict


def _check_int(name, value, minimum):
    if not isinstance(value, Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
    return int(value)


def images_to_tensor(images):
    """Validate images and map them to a float32 tensor in [-1, 1].

    The one image check of skicr (:func:`skicr._utils.images.check_images`,
    as :class:`~skicr.FeatureExtractor` and :class:`~skicr.monitoring.ICRMonitor`
    use it).

    Parameters
    ----------
    images : array-like or torch.Tensor of shape (n, C, H, W), (n, H, W, C) or (n, H, W)
        uint8 images in [0, 255] or float images in [0, 1] (the convention of
        :mod:`skicr.datasets` and the feature extractor). A 3-D input gets a
        channel axis.

    Returns
    -------
    x : torch.Tensor of shape (n, C, H, W), float32
        ``2 * images - 1`` (after scaling uint8 by 1/255).
    """
    return model_range_images(images)


def _random_shift(x, max_shift, generator):
    """Shift each image by integers in [-max_shift, max_shift], padding with background (-1)."""
    n, _, h, w = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)
    padded = torch.nn.functional.pad(x, [max_shift] * 4, value=-1.0)
    out = torch.empty_like(x)
    for i, (dy, dx) in enumerate(shifts.tolist()):
        top, left = max_shift - dy, max_shift - dx
        out[i] = padded[i, :, top : top + h, left : left + w]
    return out


class _IndexStream:
    """Minibatch indices: a fresh random permutation per epoch, concatenated."""

    def __init__(self, n, generator):
        self.n, self.generator = n, generator
        self.buffer = torch.empty(0, dtype=torch.long)

    def next(self, batch_size):
        while self.buffer.numel() < batch_size:
            perm = torch.randperm(self.n, generator=self.generator)
            self.buffer = torch.cat([self.buffer, perm])
        batch, self.buffer = self.buffer[:batch_size], self.buffer[batch_size:]
        return batch


def train_denoiser(
    images,
    n_steps=3000,
    batch_size=128,
    lr=2e-3,
    ema_decay=0.999,
    seed=0,
    *,
    net=None,
    max_shift=0,
    warmup_steps=None,
    callback=None,
    callback_every=100,
    progress=True,
    device=None,
):
    """Train an EDM-preconditioned denoiser on images.

    Adam on the EDM loss (:func:`edm_loss`: ``ln(sigma) ~ N(-1.2, 1.2^2)``,
    ``sigma_data = 0.5``, images mapped to [-1, 1]), a linear learning-rate
    warm-up, and an exponential moving average (EMA) of the weights with the
    usual warm-up ``decay_t = min(ema_decay, (1 + t) / (10 + t))``. Minibatches
    run through random permutations of the images (epochs). All randomness
    (initialisation, batches, sigma, noise, shifts) comes from ``seed``, so the
    same seed on the same machine and thread count gives the same weights; the
    global torch random state is left untouched.

    Parameters
    ----------
    images : array-like of shape (n, C, H, W) or (n, H, W)
        Training images, uint8 in [0, 255] or float in [0, 1]; H and W
        multiples of 4 for :class:`SmallUNet`.
    n_steps : int, default=3000
        Number of optimizer steps.
    batch_size : int, default=128
        Images per step.
    lr : float, default=2e-3
        Adam learning rate after warm-up.
    ema_decay : float, default=0.999
        EMA decay per step, in [0, 1).
    seed : int, default=0
        Seed of every random draw of the run.
    net : torch.nn.Module or None, default=None
        Raw network ``F`` to train in place (called as ``net(c_in x, c_noise)``).
        ``None`` builds ``SmallUNet(in_channels=C, image_size=H)`` initialised
        from ``seed``.
    max_shift : int, default=0
        Augmentation: random integer translation of each training image by up
        to ``max_shift`` pixels (background fill). 0 (the default) trains on the
        images as they are; digits are not flip-invariant, so there are no
        flips.
    warmup_steps : int or None, default=None
        Steps of linear learning-rate warm-up; ``None`` means
        ``min(200, n_steps // 10)``.
    callback : callable or None, default=None
        ``callback(step, ema_net)`` is called after optimizer steps
        ``callback_every, 2 * callback_every, ...`` and after the last step.
        ``ema_net`` is the live EMA network in eval mode: read it, copy it if
        you keep it, do not modify it. If the callback returns ``True``,
        training stops after that step (early stopping).
    callback_every : int, default=100
        Steps between callback calls.
    progress : bool, default=True
        Show a tqdm progress bar with the running loss.
    device : str, torch.device or None, default=None
        Where to train; ``None`` means the CPU (or the given net's device).

    Returns
    -------
    result : TrainingResult
        Named tuple ``(ema_net, net, history)``: the EMA network (eval mode,
        the one to use), the raw last weights, and a dict with per-step
        ``step``, ``loss``, ``lr`` lists plus ``seconds`` and
        ``stopped_early``.

    Examples
    --------
    >>> from skicr.datasets import load_digits_images
    >>> from skicr.models import train_denoiser
    >>> X, y = load_digits_images()
    >>> result = train_denoiser(X[:64], n_steps=2, batch_size=8, progress=False)
    >>> result.ema_net.training
    False
    """
    x_all = images_to_tensor(images)
    n_steps = _check_int("n_steps", n_steps, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    max_shift = _check_int("max_shift", max_shift, 0)
    callback_every = _check_int("callback_every", callback_every, 1)
    if warmup_steps is None:
        warmup_steps = min(200, n_steps // 10)
    warmup_steps = _check_int("warmup_steps", warmup_steps, 0)
    if not isinstance(lr, Real) or not lr > 0:
        raise ValueError(f"lr must be a float > 0; got {lr!r}.")
    if not isinstance(ema_decay, Real) or not 0 <= ema_decay < 1:
        raise ValueError(f"ema_decay must be in [0, 1); got {ema_decay!r}.")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable; got {type(callback).__name__}.")

    generator = torch.Generator().manual_seed(seed)
    if net is None:
        _, c, h, w = x_all.shape
        if h != w:
            raise ValueError(f"the default SmallUNet needs square images; got {h}x{w}.")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = SmallUNet(in_channels=c, image_size=h)
    elif not isinstance(net, torch.nn.Module):
        raise TypeError(f"net must be a torch.nn.Module; got {type(net).__name__}.")
    if device is None:
        first = next(net.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    net.to(device).train()
    x_all = x_all.to(device)

    ema_net = copy.deepcopy(net).eval().requires_grad_(False)
    denoiser = EDMPrecond(net, sigma_data=SIGMA_DATA)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    batches = _IndexStream(x_all.shape[0], generator)
    history = {"step": [], "loss": [], "lr": [], "seconds": 0.0, "stopped_early": False}

    start = time.perf_counter()
    bar = tqdm(range(1, n_steps + 1), disable=not progress, desc="train denoiser")
    running = None
    for step in bar:
        step_lr = lr * min(1.0, step / warmup_steps) if warmup_steps else lr
        for group in optimizer.param_groups:
            group["lr"] = step_lr
        x = x_all[batches.next(batch_size).to(device)]
        if max_shift:
            x = _random_shift(x, max_shift, generator)
        loss = edm_loss(denoiser, x, generator=generator, P_mean=P_MEAN, P_std=P_STD)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {loss.item()} at step {step}; lower lr."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema_net.parameters(), net.parameters()):
                p_ema.lerp_(p, 1 - decay)
            for b_ema, b in zip(ema_net.buffers(), net.buffers()):
                b_ema.copy_(b)

        value = loss.item()
        history["step"].append(step)
        history["loss"].append(value)
        history["lr"].append(step_lr)
        running = value if running is None else 0.98 * running + 0.02 * value
        if progress:
            bar.set_postfix(loss=f"{running:.4f}", refresh=False)
        if callback is not None and (step % callback_every == 0 or step == n_steps):
            if callback(step, ema_net) is True:
                history["stopped_early"] = True
                break
    bar.close()
    history["seconds"] = time.perf_counter() - start
    return TrainingResult(ema_net, net, history)
