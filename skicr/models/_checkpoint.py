"""One weights file for every denoiser of the zoo, loaded straight into a backbone adapter.

A checkpoint is a plain dict readable by ``torch.load(weights_only=True)``::

    {"format": "skicr.checkpoint", "version": 1,
     "architecture": "SmallUNet" | "SmallDiT" | "UNet2DModel",
     "config": {...constructor / diffusers config...},
     "parameterization": "edm" | "vp_epsilon" | "flow",
     "schedule": {...DDPMScheduler kwargs...} or None,   # vp_epsilon only
     "state_dict": {name: tensor},
     "metadata": {...how it was trained...},
     "content_hash": "<sha256 of the rest>"}

:func:`load_checkpoint` rebuilds the network and wraps it in the adapter of
its parameterisation (:class:`~skicr.extraction.EDMBackbone`,
:class:`~skicr.extraction.UNet2DBackbone` with the saved DDPM schedule, or
:class:`~skicr.extraction.FlowBackbone`), ready for
:class:`~skicr.FeatureExtractor`. It also reads the shipped ``digits.pt``
(format ``"skicr.SmallUNet"``, EDM).
"""

from pathlib import Path

import torch

from .._utils.serialization import atomic_torch_save, read_torch_file, seal, verify_seal
from .._utils.serialization import plain_metadata as _plain
from ._small_dit import SmallDiT
from ._pretrained import load_denoiser
from ._unet import SmallUNet

__all__ = ["PARAMETERIZATIONS", "save_checkpoint", "load_checkpoint"]

_FORMAT = "skicr.checkpoint"
_VERSION = 1
#: noise parameterisations a checkpoint can declare
PARAMETERIZATIONS = ("edm", "vp_epsilon", "flow")


def _architecture(net):
    if isinstance(net, SmallUNet):
        return "SmallUNet", dict(net.config)
    if isinstance(net, SmallDiT):
        return "SmallDiT", dict(net.config)
    if type(net).__name__ == "UNet2DModel" and type(net).__module__.startswith("diffusers"):
        config = {k: v for k, v in dict(net.config).items() if not k.startswith("_")}
        return "UNet2DModel", config
    raise TypeError(
        "save_checkpoint saves a SmallUNet, a SmallDiT or a diffusers UNet2DModel; "
        f"got {type(net).__name__}."
    )


def _build(architecture, config):
    if architecture == "SmallUNet":
        return SmallUNet(**config)
    if architecture == "SmallDiT":
        return SmallDiT(**config)
    if architecture == "UNet2DModel":
        from diffusers import UNet2DModel

        return UNet2DModel.from_config(config)
    raise ValueError(f"unknown architecture {architecture!r} in the checkpoint.")


def save_checkpoint(net, path, *, parameterization, schedule=None, metadata=None,
                    dtype=torch.float16):
    """Save a zoo denoiser with its parameterisation in one file.

    Parameters
    ----------
    net : SmallUNet, SmallDiT or diffusers.UNet2DModel
        The network to save (usually the EMA network).
    path : str or Path
        Output file; parent folders are created.
    parameterization : {"edm", "vp_epsilon", "flow"}
        How the network was trained: EDM raw network ``F(c_in x, c_noise)``,
        DDPM epsilon prediction ``net(x_t, t)``, or rectified-flow velocity
        ``net(x_t, t)`` with noise at ``t = 1``.
    schedule : dict or None, default=None
        ``diffusers.DDPMScheduler`` keyword arguments (e.g.
        ``{"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02}``);
        required for ``"vp_epsilon"``, ignored otherwise.
    metadata : dict or None, default=None
        Plain data describing how the weights were made.
    dtype : torch.dtype, default=torch.float16
        Storage dtype of floating-point weights (loaded back as float32).

    Returns
    -------
    path : Path
    """
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"parameterization must be one of {PARAMETERIZATIONS}; got {parameterization!r}."
        )
    if parameterization == "vp_epsilon" and not isinstance(schedule, dict):
        raise ValueError("a 'vp_epsilon' checkpoint needs its DDPM schedule as a dict.")
    architecture, config = _architecture(net)
    state = {
        k: (v.detach().cpu().to(dtype) if v.is_floating_point() else v.detach().cpu()).clone()
        for k, v in net.state_dict().items()
    }
    payload = {
        "format": _FORMAT,
        "version": _VERSION,
        "architecture": architecture,
        "config": _plain(config, "config"),
        "parameterization": parameterization,
        "schedule": _plain(schedule, "schedule") if parameterization == "vp_epsilon" else None,
        "state_dict": state,
        "metadata": _plain(dict(metadata or {})),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(seal(payload), path)
    return path


def load_checkpoint(path, device=None, return_metadata=False):
    """Load a checkpoint as a backbone adapter for :class:`~skicr.FeatureExtractor`.

    Parameters
    ----------
    path : str or Path
        A file written by :func:`save_checkpoint`, or a SmallUNet weights file
        of :func:`~skicr.models.save_denoiser` (EDM). Read with
        ``torch.load(weights_only=True)``: no code is executed.
    device : str, torch.device or None, default=None
        Where to put the network; ``None`` means the CPU.
    return_metadata : bool, default=False
        Also return the stored metadata dict (with ``"parameterization"`` and
        ``"architecture"`` added).

    Returns
    -------
    backbone : EDMBackbone, UNet2DBackbone or FlowBackbone
        The adapter of the checkpoint's parameterisation around the network
        (float32, eval mode); ``backbone.module`` is the network.
    metadata : dict
        Only when ``return_metadata=True``.
    """
    from ..extraction import EDMBackbone, FlowBackbone, UNet2DBackbone

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {str(path)!r}.")
    payload = read_torch_file(path, "skicr checkpoint")
    if isinstance(payload, dict) and payload.get("format") == "skicr.SmallUNet":
        net, metadata = load_denoiser(path, device=device, return_metadata=True)
        metadata.update(parameterization="edm", architecture="SmallUNet")
        backbone = EDMBackbone(net)
        return (backbone, metadata) if return_metadata else backbone
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a skicr checkpoint (expected a dict with format={_FORMAT!r})."
        )
    if payload.get("version") != _VERSION:
        raise ValueError(
            f"{str(path)!r} has checkpoint version {payload.get('version')!r}; "
            f"this skicr reads version {_VERSION}."
        )
    payload = verify_seal(payload, path, "checkpoint")
    net = _build(payload["architecture"], payload["config"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    net.load_state_dict(state)
    net.to(torch.device(device) if device is not None else "cpu").eval().requires_grad_(False)
    parameterization = payload["parameterization"]
    if parameterization == "edm":
        backbone = EDMBackbone(net)
    elif parameterization == "vp_epsilon":
        from diffusers import DDPMScheduler

        backbone = UNet2DBackbone(net, scheduler=DDPMScheduler(**payload["schedule"]))
    elif parameterization == "flow":
        backbone = FlowBackbone(net, time_convention="noise_at_one")
    else:
        raise ValueError(f"unknown parameterization {parameterization!r} in {str(path)!r}.")
    if return_metadata:
        metadata = dict(payload.get("metadata", {}))
        metadata.update(parameterization=parameterization, architecture=payload["architecture"])
        return backbone, metadata
    return backbone
