"""
Monitoring training with ICR
============================

ICR needs no labels and no sampling, so it can be measured while a
diffusion model trains: at a fixed noise level, on fixed views of fixed
training images. The seed paper observes that with plenty of data ICR keeps
falling, while with little data it turns upward, and that its minimum comes
before the memorization ratio starts to rise.

:class:`~skicr.ICRMonitor` records ICR, ``tr(Sigma_s)`` and ``tr(Sigma_xi)``
(where the model's expansion goes) and, optionally, the memorization ratio
of samples drawn with a fixed seed. It is a callback for
:func:`~skicr.models.train_denoiser` or any PyTorch loop
(``monitor(step, model)``), and :meth:`~skicr.ICRMonitor.turning_point` gives
an early-stopping signal.

This example trains skicr's small denoiser for 240 steps on 48
digits to show the mechanics in a few seconds. The full experiment, long
enough to memorize, is the ``skicr track`` command (:doc:`../monitoring`).
"""

# %%
import numpy as np

from skicr.datasets import load_digits_images
from skicr.models import train_denoiser
from skicr.monitoring import ICRMonitor, memorization_ratio

images = load_digits_images(return_y=False)
training = images[np.random.default_rng(4).choice(len(images), size=48, replace=False)]

monitor = ICRMonitor(
    training,         # ICR is measured on views of the training images
    sigma=0.2,
    n_views=4,
    n_samples=48,     # samples per evaluation for the memorization ratio
    sampler_steps=8,  # a short Heun schedule keeps each evaluation cheap
    random_state=0,
)
result = train_denoiser(
    training, n_steps=240, batch_size=32, seed=0, progress=False,
    callback=monitor, callback_every=30,
)
history = monitor.history_
columns = ["step", "icr", "trace_s", "trace_xi", "invariant_share", "memorization_ratio"]
history[columns].round(4)

# %%
# The trajectory: ICR (with its smoothed curve and minimum) and the
# memorization ratio, then the two traces.
axes = monitor.plot(title="48 digits, sigma = 0.2")

# %%
# The early-stopping signal
# -------------------------
# :meth:`~skicr.ICRMonitor.turning_point` smooths the trajectory, finds its
# minimum and tests whether the rise after it exceeds the point-to-point
# noise. ``found`` is the signal of the ``"turning_point"`` rule (``ICRMonitor(...,
# early_stopping="turning_point")`` makes the callback stop
# :func:`~skicr.models.train_denoiser` when it fires); ``step`` is the
# checkpoint to keep, None while ICR is still decreasing.
turning = monitor.turning_point()
print(f"found={turning.found}, minimum at step {turning.step}, "
      f"p-value {turning.p_value:.3f}")

# %%
# A few hundred steps are only the start of training, where ICR moves for
# reasons that have nothing to do with memorization (the features of a
# barely trained network change fast); read the signal over a full run, as
# ``skicr track`` does.

# %%
# Memorization, directly
# ----------------------
# The memorization ratio (Gu et al. 2023) is the fraction of generated
# samples whose nearest training image is more than three times closer than
# the second nearest. Exact copies count; fresh images do not:
samples = monitor.generate(result.ema_net)
print("samples of the trained model:", memorization_ratio(samples, training))
print("near-copies of training images:",
      memorization_ratio(training[:10] + 0.01, training))

# %%
# Checkpoints on disk
# -------------------
# Saved weights are measured the same way, one row per file, in order of
# step: ``ICRMonitor(images, sigma=0.2).from_checkpoints("checkpoints/")``
# reads files written by :func:`~skicr.models.save_denoiser` (or state
# dicts, with ``model=`` the architecture to load them into).
