"""Saving and loading denoiser weights; the weights shipped with skicr.

A weights file is a plain dict readable by ``torch.load(weights_only=True)``::

    {"format": "skicr.SmallUNet", "version": 1,
     "config": {...SmallUNet kwargs...},
     "state_dict": {name: tensor},
     "metadata": {...how it was trained...}}
"""

from pathlib import Path

import torch

from .._utils.serialization import plain_metadata as _plain
from ._unet import SmallUNet

__all__ = ["PRETRAINED", "save_denoiser", "load_denoiser", "load_pretrained"]

_FORMAT = "skicr.SmallUNet"
_VERSION = 1
_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

#: name -> (file in skicr/models/weights/, description)
PRETRAINED = {
    "digits": (
        "digits.pt",
        "SmallUNet trained on sklearn's digits at 16x16 "
        "(python -m skicr.models.train, see docs/models.md)",
    ),
}


def save_denoiser(net, path, metadata=None, dtype=torch.float32):
    """Save a :class:`SmallUNet` as a plain dict of its config and weights.

    Parameters
    ----------
    net : SmallUNet
        The network to save (usually the EMA network).
    path : str or Path
        Output file; parent folders are created.
    metadata : dict or None, default=None
        Plain data (str, int, float, bool, lists, dicts of these) describing
        how the weights were made; stored under ``"metadata"``.
    dtype : torch.dtype, default=torch.float32
        Storage dtype of floating-point weights (``torch.float16`` halves the
        file; :func:`load_denoiser` casts back to float32).

    Returns
    -------
    path : Path
        The written file.
    """
    if not isinstance(net, SmallUNet):
        raise TypeError(f"save_denoiser saves a SmallUNet; got {type(net).__name__}.")
    state = {
        k: (v.detach().cpu().to(dtype) if v.is_floating_point() else v.detach().cpu()).clone()
        for k, v in net.state_dict().items()
    }
    payload = {
        "format": _FORMAT,
        "version": _VERSION,
        "config": dict(net.config),
        "state_dict": state,
        "metadata": _plain(dict(metadata or {})),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def load_denoiser(path, device=None, return_metadata=False):
    """Load a weights file written by :func:`save_denoiser` (or ``python -m skicr.models.train``).

    Parameters
    ----------
    path : str or Path
        The ``.pt`` file. Read with ``torch.load(weights_only=True)``: no code
        is executed.
    device : str, torch.device or None, default=None
        Where to put the network; ``None`` means the CPU.
    return_metadata : bool, default=False
        Also return the stored metadata dict.

    Returns
    -------
    net : SmallUNet
        The raw network ``F`` in eval mode, float32.
    metadata : dict
        Only when ``return_metadata=True``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {str(path)!r}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, non-torch files
        raise ValueError(f"could not read {str(path)!r} as a skicr weights file: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a skicr denoiser weights file "
            f"(expected a dict with format={_FORMAT!r})."
        )
    if payload.get("version") != _VERSION:
        raise ValueError(
            f"{str(path)!r} has weights format version {payload.get('version')!r}; "
            f"this skicr reads version {_VERSION}."
        )
    net = SmallUNet(**payload["config"])
    state = {
        k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()
    }
    net.load_state_dict(state)
    net.to(torch.device(device) if device is not None else "cpu").eval()
    if return_metadata:
        return net, dict(payload.get("metadata", {}))
    return net


def load_pretrained(name="digits", device=None, return_metadata=False):
    """Load a denoiser shipped inside skicr, by name.

    Parameters
    ----------
    name : str, default="digits"
        One of ``skicr.models.PRETRAINED``: ``"digits"`` is a
        :class:`SmallUNet` (about 0.8M parameters) trained on sklearn's
        handwritten digits at 16x16 by ``python -m skicr.models.train`` (EMA
        weights; see ``docs/models.md``).
    device : str, torch.device or None, default=None
        Where to put the network; ``None`` means the CPU.
    return_metadata : bool, default=False
        Also return how the weights were trained (command, seed, losses).

    Returns
    -------
    net : SmallUNet
        The raw EDM network ``F`` in eval mode: call it as
        ``net(c_in * x, c_noise)``, or wrap it as ``EDMPrecond(net)`` for
        ``D(x; sigma)``. Its bottleneck is ``net.mid``.
    metadata : dict
        Only when ``return_metadata=True``.

    Examples
    --------
    >>> from skicr.models import load_pretrained
    >>> net = load_pretrained("digits")
    >>> net.training
    False
    """
    if not isinstance(name, str) or name not in PRETRAINED:
        raise ValueError(
            f"unknown pretrained denoiser {name!r}; available: {sorted(PRETRAINED)}. "
            "Load your own weights file with skicr.models.load_denoiser(path)."
        )
    path = _WEIGHTS_DIR / PRETRAINED[name][0]
    if not path.is_file():
        raise FileNotFoundError(
            f"the weights file of {name!r} is missing from the installation ({path}); "
            "reinstall skicr or rebuild it with `python -m skicr.models.train`."
        )
    return load_denoiser(path, device=device, return_metadata=return_metadata)
