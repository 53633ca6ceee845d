"""Adapters for the seed paper's backbones: EDM pickles and DiT / SiT release files.

Each adapter maps the VE ``sigma`` (noise std relative to data in [-1, 1],
or to the scaled VAE latents) to the model's own time input:

- EDM release networks (:class:`~skicr.models.PrecondEDM` and the VP / VE /
  iDDPM wrappers, read by :func:`skicr.models.load_edm_pickle`) take the
  VE-noisy image and ``sigma`` itself and precondition internally.
- SiT takes ``x_t = t x1 + (1 - t) x0`` with t = 0 noise and t = 1 data
  (the official linear path), so ``t = 1 / (1 + sigma)`` and
  ``x_t = (x0 + sigma eps) / (1 + sigma)``; it predicts the velocity.
- DiT takes ``x_t = sqrt(abar) (x0 + sigma eps)`` and the integer DDPM
  timestep of its linear schedule (1000 steps, betas 1e-4 .. 0.02) whose
  sigma is nearest to ``sigma`` in log space (:meth:`DiTReleaseBackbone.timestep`).

:func:`load_release_backbone` reads the files themselves.
"""

import argparse
import math
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from ._backbones import Backbone, FlowBackbone, _VPMixin, _batch_tensor, _load_diffusers_model
from ._noise import sigma_to_vp_timestep, vp_sigmas

__all__ = [
    "EDMReleaseBackbone",
    "SiTReleaseBackbone",
    "DiTReleaseBackbone",
    "dit_linear_alphas_cumprod",
    "load_release_backbone",
]


def dit_linear_alphas_cumprod(n_steps=1000, beta_start=1e-4, beta_end=0.02):
    """``alphas_cumprod`` of DiT's linear DDPM schedule (float64, as the release).

    Parameters
    ----------
    n_steps : int, default=1000
    beta_start, beta_end : float, default=1e-4, 0.02
        For ``n_steps`` other than 1000 the release scales both by
        ``1000 / n_steps``; so does this function.

    Returns
    -------
    alphas_cumprod : numpy.ndarray of shape (n_steps,)

    Examples
    --------
    >>> from skicr.extraction import dit_linear_alphas_cumprod
    >>> abar = dit_linear_alphas_cumprod()
    >>> abar.shape, round(float(abar[0]), 6)
    ((1000,), 0.9999)
    """
    scale = 1000 / int(n_steps)
    betas = np.linspace(scale * beta_start, scale * beta_end, int(n_steps), dtype=np.float64)
    return np.cumprod(1.0 - betas)


def _check_class_label(class_label, n_classes, null_class, what):
    if class_label is None:
        return None
    if isinstance(class_label, bool) or not isinstance(class_label, (int, np.integer)):
        raise TypeError(f"class_label must be an int or None; got {type(class_label).__name__}.")
    top = null_class if null_class is not None else n_classes - 1
    if not 0 <= int(class_label) <= top:
        raise ValueError(f"class_label must be in [0, {top}] for this {what}; got {class_label}.")
    return int(class_label)


# ------------------------------------------------------------------ EDM
class EDMReleaseBackbone(Backbone):
    """An EDM release network (``edm-*.pkl``), rebuilt by skicr.

    Called as ``net(x0 + sigma * eps, sigma, class_labels)``: the network
    preconditions itself (EDM: ``c_in``, ``c_noise = ln(sigma) / 4``; VP / VE /
    iDDPM: their own). Class-conditional networks get the one-hot row of
    ``class_label``.

    Parameters
    ----------
    net : skicr.models.PrecondEDM, PrecondVP, PrecondVE or PrecondIDDPM
        E.g. from :func:`skicr.models.load_edm_pickle`.
    class_label : int or None, default=None
        Required for class-conditional networks (the EDM releases have no
        trained null class: a zero row is outside their training data).
    default_layer : str or None, default=None
        None means the bottleneck, ``model.dec.{r}x{r}_in1`` at the lowest
        resolution ``r`` (the output of the two middle blocks).
    """

    def __init__(self, net, *, class_label=None, default_layer=None):
        from ..models import PrecondEDM, PrecondIDDPM, PrecondVE, PrecondVP

        if not isinstance(net, (PrecondEDM, PrecondVP, PrecondVE, PrecondIDDPM)):
            raise TypeError(
                "EDMReleaseBackbone needs an EDM release network (skicr.models.load_edm_pickle); "
                f"got {type(net).__name__}."
            )
        if default_layer is None:
            names = [n for n in net.model.dec if n.endswith("_in1")]
            default_layer = f"model.dec.{names[0]}" if names else None
        super().__init__(net, in_channels=net.img_channels, default_layer=default_layer)
        if net.label_dim and class_label is None:
            raise ValueError(
                f"This EDM network is class-conditional ({net.label_dim} classes) and has no "
                "null class; pass class_label=<int> (EDMReleaseBackbone(net, class_label=...) "
                "or load_backbone(path, class_label=...))."
            )
        if not net.label_dim and class_label is not None:
            raise ValueError("class_label was given but this EDM network is unconditional.")
        self.class_label = _check_class_label(class_label, net.label_dim, None, "EDM network")

    def check_sigma(self, sigma):
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"EDM networks need a finite sigma > 0; got {sigma!r}.")
        low, high = float(self.module.sigma_min), float(self.module.sigma_max)
        if sigma < low or sigma > high:
            warnings.warn(
                f"sigma={sigma:g} is outside the range [{low:.4g}, {high:.4g}] this "
                f"{type(self.module).__name__} network was trained on.",
                UserWarning,
                stacklevel=3,
            )

    def c_noise(self, sigma):
        """Noise conditioning the network computes for ``sigma``.

        Parameters
        ----------
        sigma : float

        Returns
        -------
        c_noise : float
        """
        value = torch.tensor([float(sigma)]).reshape(-1, 1, 1, 1)
        return float(torch.as_tensor(self.module.coefficients(value)[3]).flatten()[0])

    def forward(self, noisy, sigma):
        batch, device = noisy.shape[0], noisy.device
        labels = None
        if self.class_label is not None:
            labels = torch.zeros(batch, self.module.label_dim, device=device)
            labels[:, self.class_label] = 1
        sigmas = _batch_tensor(float(sigma), batch, device, torch.float32)
        return self.module(noisy, sigmas, labels)


# ------------------------------------------------------------------ SiT / DiT
class _LatentInputMixin:
    """Without a VAE the inputs are latents: the extractor's [-1, 1] data times ``latent_scale``."""

    def _set_latent_scale(self, latent_scale):
        if not (isinstance(latent_scale, (int, float)) and np.isfinite(latent_scale)
                and latent_scale > 0):
            raise ValueError(f"latent_scale must be a finite number > 0; got {latent_scale!r}.")
        if self.vae is not None and latent_scale != 1.0:
            raise ValueError("latent_scale applies to latent inputs; with a vae leave it at 1.")
        self.latent_scale = float(latent_scale)

    def prepare(self, images):
        if self.vae is not None:
            return super().prepare(images)
        return images * self.latent_scale


def _transformer_defaults(net, class_label, what):
    null = net.null_class
    if class_label is None:
        if null is None:
            raise ValueError(f"This {what} has no null class; pass class_label=<int>.")
        class_label = null
    return _check_class_label(class_label, net.num_classes, null, what)


class SiTReleaseBackbone(_LatentInputMixin, FlowBackbone):
    """A SiT release network (``SiT-XL-2-256x256.pt``), rebuilt by skicr.

    The network sees ``x_t = (x0 + sigma eps) / (1 + sigma)`` and
    ``t = 1 / (1 + sigma)`` (SiT's linear path, t = 0 noise, t = 1 data);
    its output is the velocity.

    Parameters
    ----------
    net : skicr.models.SiT
    vae : diffusers.AutoencoderKL, path or None, default=None
        Encoder from pixels to latents (SiT-XL/2 was trained on
        ``sd-vae-ft-ema`` latents times 0.18215); a local diffusers folder is
        loaded. None: the inputs are latents already.
    class_label : int or None, default=None
        None means the null class (``num_classes``) of classifier-free
        guidance.
    default_layer : str or None, default=None
        None means the middle block, ``blocks.{depth // 2}``.
    latent_scale : float, default=1.0
        Without a VAE: the extractor's inputs (in [0, 1], mapped to [-1, 1])
        are multiplied by this to give the latents, so latents ``z`` with
        ``|z| <= latent_scale`` are given as ``(z / latent_scale + 1) / 2``.
    """

    def __init__(self, net, *, vae=None, class_label=None, default_layer=None,
                 latent_scale=1.0):
        from ..models import SiT

        if not isinstance(net, SiT):
            raise TypeError(f"SiTReleaseBackbone needs a skicr.models.SiT; got {type(net).__name__}.")
        class_label = _transformer_defaults(net, class_label, "SiT")
        super().__init__(
            net, "data_at_one", class_label=class_label, vae=vae,
            default_layer=default_layer or f"blocks.{len(net.blocks) // 2}",
        )
        self._set_latent_scale(latent_scale)


class DiTReleaseBackbone(_LatentInputMixin, _VPMixin, Backbone):
    """A DiT release network (``DiT-XL-2-256x256.pt``), rebuilt by skicr.

    The network sees ``x_t = sqrt(abar) (x0 + sigma eps)``,
    ``abar = 1 / (1 + sigma**2)``, and the integer timestep of the linear
    1000-step schedule whose sigma is nearest to ``sigma`` (log space); a
    sigma outside the schedule's range (about [0.01, 157]) is clamped to
    the end timestep with a warning. :meth:`timestep` and :meth:`sigma_at`
    report the mapping.

    Parameters
    ----------
    net : skicr.models.DiT
    vae : diffusers.AutoencoderKL, path or None, default=None
        As for :class:`SiTReleaseBackbone`.
    scheduler : scheduler, path, array or None, default=None
        None is DiT's linear schedule (:func:`dit_linear_alphas_cumprod`).
    class_label : int or None, default=None
        None means the null class.
    default_layer : str or None, default=None
        None means the middle block, ``blocks.{depth // 2}``.
    latent_scale : float, default=1.0
        As for :class:`SiTReleaseBackbone`.
    """

    def __init__(self, net, *, vae=None, scheduler=None, class_label=None, default_layer=None,
                 latent_scale=1.0):
        from ..models import DiT, SiT

        if not isinstance(net, DiT) or isinstance(net, SiT):
            raise TypeError(f"DiTReleaseBackbone needs a skicr.models.DiT; got {type(net).__name__}.")
        if isinstance(vae, (str, os.PathLike)):
            vae = _load_diffusers_model(Path(vae), "AutoencoderKL", subfolder="vae")
        super().__init__(net, vae=vae,
                         default_layer=default_layer or f"blocks.{len(net.blocks) // 2}")
        self._set_schedule(dit_linear_alphas_cumprod() if scheduler is None else scheduler)
        self.class_label = _transformer_defaults(net, class_label, "DiT")
        self._set_latent_scale(latent_scale)

    def check_sigma(self, sigma):
        sigmas = vp_sigmas(self.alphas_cumprod)
        inside = sigmas.min() * (1 - 1e-6) <= sigma <= sigmas.max() * (1 + 1e-6)
        timestep = sigma_to_vp_timestep(sigma, self.alphas_cumprod, warn=True)  # warns outside
        used = float(sigmas[timestep])
        if inside and abs(math.log(used / sigma)) > 0.05:
            warnings.warn(
                f"sigma={sigma:g} runs DiT at timestep {timestep} (sigma {used:.4g}), the "
                "nearest of its 1000-step schedule.",
                UserWarning,
                stacklevel=3,
            )

    def forward(self, noisy, sigma):
        x_t, timesteps = self._vp_inputs(noisy, sigma)
        labels = _batch_tensor(self.class_label, x_t.shape[0], x_t.device, torch.long)
        return self.module(x_t.to(self.dtype), timesteps, labels)


# ------------------------------------------------------------------ loading files
_ARCH_IN_NAME = re.compile(r"(DiT|SiT)-(XL|L|B|S)-(\d)", re.IGNORECASE)
_TRANSFORMER_KEYS = ("pos_embed", "x_embedder.proj.weight", "final_layer.linear.weight")


def _is_pickle_file(path):
    with open(path, "rb") as handle:
        head = handle.read(2)
    return head[:1] == b"\x80" and not zipfile.is_zipfile(path)


def _load_state_dict(path):
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # train.py checkpoints also hold the argparse Namespace of the run
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(checkpoint, dict) and "ema" in checkpoint:
        checkpoint = checkpoint["ema"]  # a training checkpoint: the EMA weights, as sample.py
    elif isinstance(checkpoint, dict) and "model" in checkpoint and "pos_embed" not in checkpoint:
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, dict) or not all(k in checkpoint for k in _TRANSFORMER_KEYS):
        raise ValueError(
            f"{str(path)!r} is not a DiT / SiT state dict (no {_TRANSFORMER_KEYS[0]}, "
            f"{_TRANSFORMER_KEYS[1]}...)."
        )
    return checkpoint


def _resolve_arch(arch, path):
    """(family, named config or None) from ``arch`` or, failing that, the file name."""
    if arch is None:
        found = _ARCH_IN_NAME.search(Path(path).name)
        if found:
            family = "SiT" if found.group(1).lower() == "sit" else "DiT"
            return family, f"{family}-{found.group(2).upper()}/{found.group(3)}"
        lowered = Path(path).name.lower()
        if "sit" in lowered and "dit" not in lowered:
            return "SiT", None
        if "dit" in lowered and "sit" not in lowered:
            return "DiT", None
        raise ValueError(
            f"Cannot tell whether {Path(path).name!r} is a DiT or a SiT checkpoint (their state "
            "dicts have the same layout): pass arch='SiT-XL/2', arch='DiT-XL/2' (or 'SiT' / "
            "'DiT' to read the sizes from the file)."
        )
    text = str(arch)
    if text in ("SiT", "DiT"):
        return text, None
    match = re.match(r"^(DiT|SiT)-(XL|L|B|S)[/-](\d)$", text)
    if match is None:
        raise ValueError(
            f"arch must be a release name such as 'SiT-XL/2' or 'DiT-B/4', or 'SiT' / 'DiT'; "
            f"got {arch!r}."
        )
    return match.group(1), f"{match.group(1)}-{match.group(2)}/{match.group(3)}"


def _transformer_from_state(state, family, named, model_kwargs):
    from ..models import DiT, SiT, TRANSFORMER_CONFIGS

    pos = state["pos_embed"]
    proj = state["x_embedder.proj.weight"]
    hidden, patch, in_channels = int(pos.shape[-1]), int(proj.shape[-1]), int(proj.shape[1])
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    out_channels = int(state["final_layer.linear.weight"].shape[0]) // (patch * patch)
    inferred = dict(
        input_size=math.isqrt(int(pos.shape[1])) * patch,
        patch_size=patch,
        in_channels=in_channels,
        hidden_size=hidden,
        depth=depth,
        mlp_ratio=int(state["blocks.0.mlp.fc1.weight"].shape[0]) / hidden,
        # the releases train with label dropout 0.1: the last table row is the null class
        num_classes=int(state["y_embedder.embedding_table.weight"].shape[0]) - 1,
        class_dropout_prob=0.1,
        learn_sigma=out_channels == 2 * in_channels,
    )
    sizes = {width: (d, heads) for d, width, heads in TRANSFORMER_CONFIGS.values()}
    if named is not None:
        size = named.split("-")[1].split("/")[0]
        want_depth, want_hidden, heads = TRANSFORMER_CONFIGS[size]
        want_patch = int(named.split("/")[1])
        if (want_depth, want_hidden, want_patch) != (depth, hidden, patch):
            raise ValueError(
                f"The file holds a transformer of depth {depth}, width {hidden}, patch {patch}; "
                f"{named} has depth {want_depth}, width {want_hidden}, patch {want_patch}."
            )
        inferred["num_heads"] = heads
    elif hidden in sizes and sizes[hidden][0] == depth:
        inferred["num_heads"] = sizes[hidden][1]
    kwargs = {**inferred, **(model_kwargs or {})}
    if "num_heads" not in kwargs:
        raise ValueError(
            f"Width {hidden} and depth {depth} are not a released {family} size, so the number "
            "of attention heads is unknown: pass model_kwargs={'num_heads': ...}."
        )
    net = (SiT if family == "SiT" else DiT)(**kwargs)
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)


def load_release_backbone(path, arch=None, *, model_kwargs=None, class_label=None, vae=None,
                          device=None):
    """Load an EDM pickle or a DiT / SiT release file as a backbone adapter.

    Parameters
    ----------
    path : str or os.PathLike
        An NVlabs EDM pickle (``edm-cifar10-32x32-uncond-vp.pkl``, read
        without running its code), or a DiT / SiT state dict
        (``SiT-XL-2-256x256.pt``, or a ``train.py`` checkpoint, whose ``ema``
        weights are used).
    arch : str or None, default=None
        For DiT / SiT files: a release name (``"SiT-XL/2"``), or ``"SiT"`` /
        ``"DiT"`` to read every size from the file. None reads it from the
        file name (``SiT-XL-2-256x256.pt``). Ignored for EDM pickles (their
        architecture is recorded in them).
    model_kwargs : dict or None, default=None
        Constructor arguments overriding what is read from the file
        (``num_heads`` for a non-release width, ...).
    class_label : int or None, default=None
        Class to condition on; None is the null class of DiT / SiT, and
        required for class-conditional EDM networks.
    vae : diffusers.AutoencoderKL, path or None, default=None
        DiT / SiT: encoder from pixels to latents (a local diffusers
        ``AutoencoderKL`` folder such as ``sd-vae-ft-ema``). None: inputs are
        latents.
    device : str or torch.device or None, default=None

    Returns
    -------
    backbone : EDMReleaseBackbone, SiTReleaseBackbone or DiTReleaseBackbone

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    ValueError
        If the file is neither format, or does not match ``arch``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a file.")
    if _is_pickle_file(path):
        from ..models import load_edm_pickle

        if vae is not None:
            raise ValueError("EDM networks work on pixels; vae must be None.")
        backbone = EDMReleaseBackbone(load_edm_pickle(path), class_label=class_label)
    else:
        family, named = _resolve_arch(arch, path)
        net = _transformer_from_state(_load_state_dict(path), family, named, model_kwargs)
        cls = SiTReleaseBackbone if family == "SiT" else DiTReleaseBackbone
        backbone = cls(net, vae=vae, class_label=class_label)
    if device is not None:
        backbone.to(device)
    return backbone
