"""Noise parameterisations, all spoken in one VE ``sigma``.

The user always gives ``sigma``: the standard deviation of Gaussian noise added
to data in ``[-1, 1]`` (or to a latent), ``x = x0 + sigma * eps`` (EDM's
convention). Each family of models expects something else; the functions
here map ``sigma`` to it and back. They are the only place this math lives.

- VE / EDM: the network ``F`` is called as ``F(c_in * x, c_noise)`` with
  ``c_in = 1 / sqrt(sigma**2 + sigma_data**2)`` and ``c_noise = log(sigma) / 4``.
- VP / DDPM: ``x_t = sqrt(abar) * x0 + sqrt(1 - abar) * eps``
  ``= sqrt(abar) * (x0 + sigma * eps)`` with ``abar = 1 / (1 + sigma**2)``;
  the timestep is the one of the scheduler's ``alphas_cumprod`` grid whose
  sigma is nearest to ``sigma`` (in log space).
- Flow / rectified: ``x_t = (1 - t) * x0 + t * eps = (1 - t) * (x0 + sigma * eps)``
  with ``t = sigma / (1 + sigma)``; models that count ``t = 1`` as data
  (SiT) receive ``1 - t``.
"""

import warnings

import numpy as np

from .._utils.validation import check_sigma

__all__ = [
    "edm_input_scaling",
    "edm_c_noise_to_sigma",
    "vp_sigmas",
    "sigma_to_vp_timestep",
    "vp_timestep_to_sigma",
    "vp_input_scale",
    "FLOW_TIME_CONVENTIONS",
    "sigma_to_flow_time",
    "flow_time_to_sigma",
    "flow_input_scale",
]

FLOW_TIME_CONVENTIONS = ("noise_at_one", "data_at_one")


def _check_sigma(sigma, *, positive=False):
    return check_sigma(sigma, allow_zero=not positive)


# --------------------------------------------------------------------- EDM / VE
def edm_input_scaling(sigma, sigma_data=0.5):
    """EDM input scaling and noise conditioning for one VE noise level, as floats.

    The input half (``c_in``, ``c_noise``) of
    :func:`skicr.models.edm_preconditioning`, which returns all four
    coefficients as tensors for training; this is what calling a raw EDM
    network at one ``sigma`` needs.

    Parameters
    ----------
    sigma : float
        VE noise std, > 0.
    sigma_data : float, default=0.5
        Data std assumed by the preconditioning (0.5 for data in [-1, 1]).

    Returns
    -------
    c_in : float
        ``1 / sqrt(sigma**2 + sigma_data**2)``.
    c_noise : float
        ``log(sigma) / 4``.
    """
    sigma = _check_sigma(sigma, positive=True)
    c_in = 1.0 / np.hypot(sigma, sigma_data)  # hypot: no overflow of sigma**2
    c_noise = np.log(sigma) / 4.0
    return float(c_in), float(c_noise)


def edm_c_noise_to_sigma(c_noise):
    """Invert ``c_noise = log(sigma) / 4``.

    Parameters
    ----------
    c_noise : float or array-like

    Returns
    -------
    sigma : float or ndarray
    """
    return np.exp(4.0 * np.asarray(c_noise, dtype=np.float64))


# ---------------------------------------------------------------------- VP / DDPM
def vp_sigmas(alphas_cumprod):
    """VE sigma of every timestep of a VP schedule, ``sqrt((1 - abar) / abar)``.

    Parameters
    ----------
    alphas_cumprod : array-like of shape (n_timesteps,)
        Cumulative products of ``1 - beta`` (diffusers ``scheduler.alphas_cumprod``).

    Returns
    -------
    sigmas : ndarray of shape (n_timesteps,)
    """
    abar = np.asarray(alphas_cumprod, dtype=np.float64)
    if abar.ndim != 1 or abar.size == 0:
        raise ValueError(
            f"alphas_cumprod must be a non-empty 1-D array; got shape {abar.shape}."
        )
    if np.any(~np.isfinite(abar)) or np.any(abar <= 0) or np.any(abar > 1):
        raise ValueError("alphas_cumprod must lie in (0, 1].")
    return np.sqrt((1.0 - abar) / abar)


def sigma_to_vp_timestep(sigma, alphas_cumprod, *, warn=True):
    """Timestep of a VP schedule whose noise level is nearest to ``sigma``.

    Nearness is measured in log sigma, which is how the noise levels of a
    schedule are spread. A ``sigma`` outside the schedule's range maps to the
    first or last timestep, with a warning.

    Parameters
    ----------
    sigma : float
        VE noise std, >= 0.
    alphas_cumprod : array-like of shape (n_timesteps,)
        The schedule (``abar = 1 / (1 + sigma**2)`` at each timestep).
    warn : bool, default=True
        Warn when ``sigma`` lies outside the schedule's range.

    Returns
    -------
    timestep : int
    """
    sigma = _check_sigma(sigma)
    sigmas = vp_sigmas(alphas_cumprod)
    lo, hi = sigmas.min(), sigmas.max()
    # tolerance: a sigma read back from the grid must not warn
    if warn and (sigma < lo * (1 - 1e-6) or sigma > hi * (1 + 1e-6)):
        warnings.warn(
            f"sigma={sigma:g} lies outside the VP schedule's range "
            f"[{lo:.4g}, {hi:.4g}]; using the nearest end timestep.",
            UserWarning,
            stacklevel=3,
        )
    with np.errstate(divide="ignore"):
        distance = np.abs(np.log(np.maximum(sigmas, 1e-300)) - np.log(max(sigma, 1e-300)))
    return int(np.argmin(distance))


def vp_timestep_to_sigma(timestep, alphas_cumprod):
    """VE sigma of one timestep of a VP schedule.

    Parameters
    ----------
    timestep : int
    alphas_cumprod : array-like of shape (n_timesteps,)

    Returns
    -------
    sigma : float
    """
    sigmas = vp_sigmas(alphas_cumprod)
    timestep = int(timestep)
    if not 0 <= timestep < sigmas.size:
        raise ValueError(
            f"timestep must be in [0, {sigmas.size - 1}]; got {timestep}."
        )
    return float(sigmas[timestep])


def vp_input_scale(sigma):
    """``sqrt(abar) = 1 / sqrt(1 + sigma**2)``: maps ``x0 + sigma * eps`` to ``x_t``.

    Parameters
    ----------
    sigma : float

    Returns
    -------
    scale : float
    """
    sigma = _check_sigma(sigma)
    return float(1.0 / np.hypot(1.0, sigma))


# ----------------------------------------------------------------- flow / rectified
def _check_convention(time_convention):
    if time_convention not in FLOW_TIME_CONVENTIONS:
        raise ValueError(
            f"time_convention must be one of {FLOW_TIME_CONVENTIONS}; "
            f"got {time_convention!r}."
        )


def sigma_to_flow_time(sigma, time_convention="noise_at_one"):
    """Flow-matching time for a VE noise level.

    Parameters
    ----------
    sigma : float
        VE noise std, >= 0.
    time_convention : {"noise_at_one", "data_at_one"}, default="noise_at_one"
        ``"noise_at_one"``: ``x_t = (1 - t) x0 + t eps`` (rectified flow,
        diffusers' flow-matching schedulers), ``t = sigma / (1 + sigma)``.
        ``"data_at_one"``: ``x_t = t x0 + (1 - t) eps`` (SiT), ``t = 1 / (1 + sigma)``.

    Returns
    -------
    t : float
    """
    sigma = _check_sigma(sigma)
    _check_convention(time_convention)
    t_noise = sigma / (1.0 + sigma)
    return float(t_noise if time_convention == "noise_at_one" else 1.0 - t_noise)


def flow_time_to_sigma(t, time_convention="noise_at_one"):
    """VE noise level of a flow-matching time (inverse of :func:`sigma_to_flow_time`).

    Parameters
    ----------
    t : float
        Time in [0, 1) (the pure-noise end has no finite sigma).
    time_convention : {"noise_at_one", "data_at_one"}, default="noise_at_one"

    Returns
    -------
    sigma : float
    """
    _check_convention(time_convention)
    t = float(t)
    t_noise = t if time_convention == "noise_at_one" else 1.0 - t
    if not 0.0 <= t_noise < 1.0:
        raise ValueError(
            f"t={t!r} is outside the range of finite noise levels for "
            f"time_convention={time_convention!r}."
        )
    return float(t_noise / (1.0 - t_noise))


def flow_input_scale(sigma):
    """``1 - t = 1 / (1 + sigma)``: maps ``x0 + sigma * eps`` to the flow's ``x_t``.

    Parameters
    ----------
    sigma : float

    Returns
    -------
    scale : float
    """
    sigma = _check_sigma(sigma)
    return float(1.0 / (1.0 + sigma))
