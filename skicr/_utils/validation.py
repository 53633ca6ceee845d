"""Parameter checks shared across skicr: integers, sigma grids, layer names, streaming estimators."""

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import InvalidParameterError

__all__ = [
    "SIGMA_RANGE",
    "check_int",
    "check_sigma",
    "check_sigma_grid",
    "check_layer_names",
    "check_layer_list",
    "check_streaming_estimator",
    "check_torch_device",
]


def check_int(name, value, minimum):
    """``value`` as an int, refusing bools, non-integers and values below ``minimum``.

    Parameters
    ----------
    name : str
        The parameter's name in the error message.
    value : object
        The value to check.
    minimum : int
        The smallest value allowed.

    Returns
    -------
    value : int
    """
    if not isinstance(value, Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
    return int(value)


#: The noise levels every backbone can run at: within it ``sigma**2`` is a normal
#: float32 number (about 1.2e-38 to 3.4e38), so the coefficients torch computes in
#: float32 (``c_in``, ``c_out``, ``sqrt(abar)``...) stay finite and non-zero. At
#: either end the image or the noise is far below float32's resolution anyway.
SIGMA_RANGE = (1e-18, 1e18)


def _range_message(name, got):
    low, high = SIGMA_RANGE
    return (
        f"{name} must lie in [{low:g}, {high:g}] (noise std relative to data in [-1, 1]; "
        f"beyond that range float32 computations of sigma**2 overflow or underflow); "
        f"got {got}."
    )


def check_sigma(sigma, *, name="sigma", allow_zero=False):
    """One noise level as a float, refusing what no backbone can run at.

    Parameters
    ----------
    sigma : float
        The noise level.
    name : str, default="sigma"
        The parameter's name in the error message.
    allow_zero : bool, default=False
        Accept ``sigma == 0`` (no noise), where the caller's math allows it.

    Returns
    -------
    sigma : float

    Raises
    ------
    ValueError
        When ``sigma`` is not a number, not finite, negative, or outside
        :data:`SIGMA_RANGE` (zero aside when ``allow_zero``).
    """
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number; got {sigma!r}.") from None
    if allow_zero and value == 0:
        return 0.0
    if not np.isfinite(value) or value <= 0:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}; got {sigma!r}.")
    if not SIGMA_RANGE[0] <= value <= SIGMA_RANGE[1]:
        raise ValueError(_range_message(name, repr(value)))
    return value


def check_sigma_grid(sigmas):
    """The sigma grid as a 1-D float array: finite, positive, distinct, not empty.

    Parameters
    ----------
    sigmas : array-like
        Noise levels.

    Returns
    -------
    grid : ndarray of shape (n_sigmas,)
    """
    try:
        grid = np.asarray(sigmas, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sigmas must be a list of numbers; got {sigmas!r}.") from exc
    if grid.ndim != 1:
        raise ValueError(
            f"sigmas must be a 1-D list of noise levels; got an array of shape {grid.shape}."
        )
    if grid.size == 0:
        raise ValueError("sigmas is empty: give at least one noise level to scan.")
    if not np.all(np.isfinite(grid)):
        raise ValueError(f"sigmas must be finite; got {grid.tolist()}.")
    if np.any(grid <= 0):
        bad = grid[grid <= 0].tolist()
        raise ValueError(f"sigmas must be positive (noise std); got {bad}.")
    outside = grid[(grid < SIGMA_RANGE[0]) | (grid > SIGMA_RANGE[1])]
    if outside.size:
        raise ValueError(_range_message("sigmas", outside.tolist()))
    if np.unique(grid).size != grid.size:
        raise ValueError(f"sigmas contains repeated values: {grid.tolist()}.")
    return grid


def check_layer_names(layers):
    """The layer names as a list of distinct strings (no network needed).

    Bad types raise InvalidParameterError, which is both a TypeError and a
    ValueError, so estimator parameters and method arguments can share it.

    Parameters
    ----------
    layers : str or sequence of str
        Layer names.

    Returns
    -------
    layers : list of str
    """
    if isinstance(layers, str):
        layers = [layers]
    try:
        layers = list(layers)
    except TypeError as exc:
        raise InvalidParameterError(f"layers must be a list of layer names; got {layers!r}.") from exc
    if not layers:
        raise ValueError("layers is empty: give at least one layer name.")
    bad = [name for name in layers if not isinstance(name, str)]
    if bad:
        raise InvalidParameterError(f"layer names must be strings; got {bad!r}.")
    repeated = sorted({name for name in layers if layers.count(name) > 1})
    if repeated:
        raise ValueError(f"layers contains repeated names: {repeated}.")
    return layers


def check_layer_list(backbone, layers):
    """Layer names that are non-empty, distinct and all in ``backbone`` (close-match errors).

    Parameters
    ----------
    backbone : skicr.extraction.Backbone
        The adapter whose ``get_layer`` knows the names.
    layers : str or sequence of str
        Layer names.

    Returns
    -------
    layers : list of str
    """
    layers = check_layer_names(layers)
    for name in layers:
        backbone.get_layer(name)  # unknown layer: error with close matches
    return layers


def check_streaming_estimator(covariance_estimator, caller):
    """Refuse covariance estimators that need the views themselves, not their statistics.

    Parameters
    ----------
    covariance_estimator : estimator or None
        The decomposer's ``covariance_estimator``.
    caller : str
        The method that needs statistics only, for the message.
    """
    from ..metrics import is_streaming_estimator

    if not is_streaming_estimator(covariance_estimator):
        raise ValueError(
            f"{caller} needs a streaming covariance estimator (None, EmpiricalCovariance, "
            f"ShrunkCovariance, LedoitWolf, OAS); got {type(covariance_estimator).__name__}, "
            "which needs the views themselves. Use fit on all the data instead."
        )


def check_torch_device(device, name="device"):
    """``device`` as a ``torch.device`` that exists here, or a one-line ValueError.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``...
    name : str, default="device"
        The parameter's name in the message.

    Returns
    -------
    device : torch.device
    """
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{name}={device!r} is not a torch device (try 'cpu', 'cuda', 'cuda:0', "
                         "'mps').") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if not torch.backends.cuda.is_built()
                   else "no GPU is visible")
            raise ValueError(f"{name}={device!r}: CUDA is not available ({why}); use 'cpu'.")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"{name}={device!r}: there are only {torch.cuda.device_count()} "
                             "CUDA device(s).")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}={device!r}: MPS is not available on this machine; use 'cpu'.")
    return parsed
