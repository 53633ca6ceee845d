"""Backbone adapters: one small protocol over every kind of denoiser.

An adapter wraps a frozen network and knows three things:

- which of its submodules are layers (``layer_names``, ``default_layer``);
- how to bring images in ``[-1, 1]`` to the space noise is added in
  (``prepare``: identity, or a VAE encoder for latent models);
- how to call the network on ``x0 + sigma * eps`` (``forward``), mapping the
  VE ``sigma`` to the model's own input scaling and time conditioning (see
  :mod:`skicr.extraction._noise`).

The extractor hooks the requested layer and stops the forward pass there.
"""

import difflib
import json
import os
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._archive import archive_modules, restore_modules
from ._noise import (
    FLOW_TIME_CONVENTIONS,
    edm_c_noise_to_sigma,
    edm_preconditioning,
    flow_input_scale,
    flow_time_to_sigma,
    sigma_to_flow_time,
    sigma_to_vp_timestep,
    vp_input_scale,
    vp_timestep_to_sigma,
)

__all__ = [
    "Backbone",
    "UNet2DBackbone",
    "DiTBackbone",
    "EDMBackbone",
    "FlowBackbone",
    "CallableBackbone",
    "as_backbone",
    "load_backbone",
    "list_layers",
]


# ------------------------------------------------------------------ helpers
def _is_diffusers(obj, class_name):
    """isinstance check that imports diffusers only when the object comes from it."""
    if not type(obj).__module__.startswith("diffusers"):
        return False
    import diffusers

    return isinstance(obj, getattr(diffusers, class_name))


def _guess_default_layer(module):
    names = dict(module.named_children())
    for name in ("mid_block", "mid", "middle_block", "bottleneck"):
        if name in names:
            return name
    for name in ("transformer_blocks", "blocks"):
        blocks = names.get(name)
        if isinstance(blocks, (nn.ModuleList, nn.Sequential)) and len(blocks):
            return f"{name}.{len(blocks) // 2}"
    return None


def _guess_in_channels(module):
    config = getattr(module, "config", None)  # diffusers models (and skicr's SmallUNet)
    value = config.get("in_channels") if isinstance(config, dict) else getattr(config, "in_channels", None)
    if isinstance(value, int):
        return value
    for attribute in ("in_channels", "img_channels", "image_channels"):
        value = vars(module).get(attribute)  # plain attributes only (diffusers warns on getattr)
        if isinstance(value, int):
            return value
    for sub in module.modules():
        if isinstance(sub, nn.Conv2d):
            return sub.in_channels
    return None


def _batch_tensor(value, batch, device, dtype):
    return torch.full((batch,), value, device=device, dtype=dtype)


def _check_module(module, what):
    if not isinstance(module, nn.Module):
        raise TypeError(f"{what} must be a torch.nn.Module; got {type(module).__name__}.")


# ------------------------------------------------------------------ protocol
class Backbone:
    """Base adapter: a frozen network seen by :class:`FeatureExtractor`.

    Subclasses implement :meth:`forward`; most also set ``default_layer``.

    Parameters
    ----------
    module : torch.nn.Module
        The denoiser whose layers are read.
    vae : diffusers.AutoencoderKL or None, default=None
        Encoder for latent models: images are encoded (posterior mean, times
        the VAE's ``scaling_factor``, minus its ``shift_factor`` if it has one)
        and noise is added to the latents.
    in_channels : int or None, default=None
        Channels the images must have; guessed from the network (or the VAE)
        when None.
    default_layer : str or None, default=None
        Layer used when the extractor is given ``layer=None``; guessed from
        the network's children (``mid_block``, ``mid``, middle transformer
        block) when None.
    """

    def __init__(self, module, *, vae=None, in_channels=None, default_layer=None):
        _check_module(module, "module")
        if vae is not None:
            _check_module(vae, "vae")
            if not hasattr(vae, "encode"):
                raise TypeError("vae must have an encode method (e.g. diffusers.AutoencoderKL).")
        self.module = module
        self.vae = vae
        self._in_channels = in_channels
        self._default_layer = default_layer

    # --- layers
    @property
    def default_layer(self):
        """Layer read when none is requested (str or None)."""
        if self._default_layer is not None:
            return self._default_layer
        return _guess_default_layer(self.module)

    def layer_names(self):
        """Names of every submodule of the network, in registration order.

        Returns
        -------
        names : list of str
        """
        return [name for name, _ in self.module.named_modules() if name]

    def get_layer(self, name):
        """The submodule called ``name``.

        Parameters
        ----------
        name : str

        Returns
        -------
        layer : torch.nn.Module

        Raises
        ------
        ValueError
            If there is no such layer; the message names close matches.
        """
        modules = dict(self.module.named_modules())
        if name and name in modules:
            return modules[name]
        names = [n for n in modules if n]
        close = difflib.get_close_matches(str(name), names, n=5, cutoff=0.4)
        hint = (
            f" Did you mean one of {close}?" if close
            else f" Layers start with: {names[:8]}."
        )
        raise ValueError(
            f"Unknown layer {name!r} for {type(self.module).__name__}.{hint} "
            "skicr.list_layers(backbone) lists them all."
        )

    # --- devices and modes
    def modules_(self):
        """The torch modules this adapter runs (network, then VAE if any).

        Returns
        -------
        modules : list of torch.nn.Module
        """
        return [m for m in (self.module, self.vae) if m is not None]

    @property
    def device(self):
        """Device of the network's first parameter (CPU for a parameterless one)."""
        for tensor in self.module.parameters():
            return tensor.device
        for tensor in self.module.buffers():
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self):
        """Floating dtype of the network's first floating parameter."""
        for tensor in self.module.parameters():
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.float32

    def to(self, device):
        """Move the network (and VAE) to ``device``, in place.

        Parameters
        ----------
        device : str or torch.device

        Returns
        -------
        self : Backbone
        """
        for module in self.modules_():
            module.to(device)
        return self

    # --- noise
    def check_sigma(self, sigma):
        """Raise or warn when the network cannot be run at ``sigma``.

        Parameters
        ----------
        sigma : float
        """

    # --- images
    @property
    def in_channels(self):
        """Channel count the input images must have (int or None if unknown)."""
        if self._in_channels is not None:
            return int(self._in_channels)
        if self.vae is not None:
            return _guess_in_channels(self.vae)
        return self._model_in_channels()

    def _model_in_channels(self):
        return _guess_in_channels(self.module)

    def prepare(self, images):
        """Map images in [-1, 1] to the space noise is added in.

        Parameters
        ----------
        images : Tensor of shape (n, C, H, W)

        Returns
        -------
        data : Tensor
            ``images`` itself, or scaled VAE latents.
        """
        if self.vae is None:
            return images
        vae_dtype = next(self.vae.parameters()).dtype
        encoded = self.vae.encode(images.to(vae_dtype))
        posterior = encoded.latent_dist if hasattr(encoded, "latent_dist") else encoded[0]
        latents = posterior.mode() if hasattr(posterior, "mode") else posterior
        config = getattr(self.vae, "config", None)
        scaling = getattr(config, "scaling_factor", None) or 1.0
        shift = getattr(config, "shift_factor", None) or 0.0
        return ((latents - shift) * scaling).float()

    def forward(self, noisy, sigma):
        """Run the network on VE-space input ``x0 + sigma * eps``.

        Parameters
        ----------
        noisy : Tensor of shape (n, C, H, W)
            Prepared data plus noise at ``sigma``.
        sigma : float
            VE noise std.

        Returns
        -------
        output : object
            Whatever the network returns (the extractor reads a hooked layer).
        """
        raise NotImplementedError

    # --- pickling: weights through torch.save / torch.load(weights_only=True)
    def __getstate__(self):
        return archive_modules(self.__dict__)

    def __setstate__(self, state):
        self.__dict__.update(restore_modules(dict(state)))

    def __repr__(self):
        extra = f", vae={type(self.vae).__name__}" if self.vae is not None else ""
        return f"{type(self).__name__}({type(self.module).__name__}{extra})"


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


class UNet2DBackbone(_VPMixin, Backbone):
    """diffusers ``UNet2DModel`` (DDPM-style, variance preserving).

    The network sees ``x_t = sqrt(abar) * (x0 + sigma * eps)`` with
    ``abar = 1 / (1 + sigma**2)`` and the scheduler timestep whose sigma is
    nearest to ``sigma``.

    Parameters
    ----------
    unet : diffusers.UNet2DModel or path
        An instance, or a local directory holding a saved ``UNet2DModel``
        (``config.json`` + weights, or a pipeline folder with ``unet/``).
    scheduler : scheduler, path, array or None, default=None
        Anything with ``alphas_cumprod`` (a diffusers scheduler), a directory
        holding a scheduler config, or the ``alphas_cumprod`` array. None uses
        the scheduler saved next to a checkpoint directory when there is one,
        else a default ``DDPMScheduler()`` (linear betas 1e-4..0.02, 1000
        steps: DDPM's CIFAR-10 schedule).
    class_label : int or None, default=None
        Class fed to class-conditional U-Nets (required for them).
    default_layer : str, default="mid_block"
    """

    def __init__(self, unet, scheduler=None, *, class_label=None, default_layer="mid_block"):
        if isinstance(unet, (str, os.PathLike)):
            path = Path(unet)
            unet = _load_diffusers_model(path, "UNet2DModel", subfolder="unet")
            if scheduler is None and _scheduler_dir(path) is not None:
                scheduler = path
        if not _is_diffusers(unet, "UNet2DModel"):
            raise TypeError(
                f"UNet2DBackbone needs a diffusers UNet2DModel; got {type(unet).__name__}."
            )
        super().__init__(unet, default_layer=default_layer)
        self._set_schedule(scheduler)
        self.class_label = class_label
        if getattr(unet, "class_embedding", None) is not None and class_label is None:
            raise ValueError(
                "This UNet2DModel is class-conditional; pass class_label=<int>."
            )

    def _model_in_channels(self):
        return int(self.module.config.in_channels)

    def forward(self, noisy, sigma):
        x_t, timesteps = self._vp_inputs(noisy, sigma)
        kwargs = {}
        if self.class_label is not None:
            kwargs["class_labels"] = _batch_tensor(self.class_label, x_t.shape[0], x_t.device, torch.long)
        return self.module(x_t.to(self.dtype), timesteps, return_dict=False, **kwargs)


class DiTBackbone(_VPMixin, Backbone):
    """diffusers ``DiTTransformer2DModel`` (variance preserving, token features).

    Blocks are ``transformer_blocks.{k}``; their outputs are tokens
    ``(n, n_tokens, width)``. The class input defaults to the null
    (unconditional) class that classifier-free guidance was trained with.

    Parameters
    ----------
    transformer : diffusers.DiTTransformer2DModel or path
        An instance, or a local directory (a pipeline folder with
        ``transformer/``, ``vae/`` and ``scheduler/``, or the model folder).
    vae : diffusers.AutoencoderKL, path or None, default=None
        Encoder for latent DiTs (the released DiT-XL/2 checkpoints). None with
        a pipeline folder loads its ``vae/`` when there is one.
    scheduler : scheduler, path, array or None, default=None
        As for :class:`UNet2DBackbone` (DiT was trained on DDPM's linear schedule).
    class_label : int or None, default=None
        Class fed to the network; None means the null class
        (``num_embeds_ada_norm``).
    default_layer : str or None, default=None
        None means the middle block, ``transformer_blocks.{num_layers // 2}``.
    """

    def __init__(self, transformer, vae=None, scheduler=None, *, class_label=None, default_layer=None):
        if isinstance(transformer, (str, os.PathLike)):
            path = Path(transformer)
            transformer = _load_diffusers_model(path, "DiTTransformer2DModel", subfolder="transformer")
            if vae is None and (path / "vae" / "config.json").is_file():
                vae = path / "vae"
            if scheduler is None and _scheduler_dir(path) is not None:
                scheduler = path
        if isinstance(vae, (str, os.PathLike)):
            vae = _load_diffusers_model(Path(vae), "AutoencoderKL", subfolder="vae")
        if not _is_diffusers(transformer, "DiTTransformer2DModel"):
            raise TypeError(
                "DiTBackbone needs a diffusers DiTTransformer2DModel; got "
                f"{type(transformer).__name__}."
            )
        if default_layer is None:
            default_layer = f"transformer_blocks.{transformer.config.num_layers // 2}"
        super().__init__(transformer, vae=vae, default_layer=default_layer)
        self._set_schedule(scheduler)
        n_classes = int(transformer.config.num_embeds_ada_norm)
        if class_label is None:
            class_label = n_classes  # the classifier-free-guidance "null" class
        if not 0 <= int(class_label) <= n_classes:
            raise ValueError(f"class_label must be in [0, {n_classes}]; got {class_label}.")
        self.class_label = int(class_label)

    def _model_in_channels(self):
        return int(self.module.config.in_channels)

    def forward(self, noisy, sigma):
        x_t, timesteps = self._vp_inputs(noisy, sigma)
        labels = _batch_tensor(self.class_label, x_t.shape[0], x_t.device, torch.long)
        return self.module(x_t.to(self.dtype), timestep=timesteps, class_labels=labels, return_dict=False)


class EDMBackbone(Backbone):
    """EDM-preconditioned networks (variance exploding).

    With ``call="raw"`` the raw network ``F`` of
    ``D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)`` is called as
    ``net(c_in * x, c_noise)``, ``c_noise = log(sigma) / 4`` a tensor of shape
    ``(n,)`` (skicr's own denoiser). With ``call="preconditioned"`` the
    network does the preconditioning itself and is called as
    ``net(x, sigma)`` (NVlabs EDM's ``EDMPrecond``).

    Parameters
    ----------
    net : torch.nn.Module
    sigma_data : float, default=0.5
        Data std of the preconditioning (0.5 for data in [-1, 1]).
    call : {"raw", "preconditioned"}, default="raw"
    class_label : int or None, default=None
        Passed as a third argument (a label tensor of shape (n,)) when not None.
    in_channels : int or None, default=None
    default_layer : str or None, default=None
        None guesses (``mid`` for skicr's denoiser).
    """

    def __init__(self, net, sigma_data=0.5, *, call="raw", class_label=None,
                 in_channels=None, default_layer=None):
        super().__init__(net, in_channels=in_channels, default_layer=default_layer)
        if call not in ("raw", "preconditioned"):
            raise ValueError(f"call must be 'raw' or 'preconditioned'; got {call!r}.")
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0; got {sigma_data!r}.")
        self.sigma_data = float(sigma_data)
        self.call = call
        self.class_label = class_label

    def check_sigma(self, sigma):
        if not sigma > 0:
            raise ValueError(
                f"EDM conditioning needs sigma > 0 (c_noise = log(sigma) / 4); got {sigma!r}."
            )

    def c_noise(self, sigma):
        """Noise conditioning ``log(sigma) / 4``.

        Parameters
        ----------
        sigma : float

        Returns
        -------
        c_noise : float
        """
        return edm_preconditioning(sigma, self.sigma_data)[1]

    def sigma_at(self, c_noise):
        """Inverse of :meth:`c_noise`.

        Parameters
        ----------
        c_noise : float

        Returns
        -------
        sigma : float
        """
        return float(edm_c_noise_to_sigma(c_noise))

    def forward(self, noisy, sigma):
        c_in, c_noise = edm_preconditioning(sigma, self.sigma_data)
        batch, device, dtype = noisy.shape[0], noisy.device, self.dtype
        args = []
        if self.class_label is not None:
            args.append(_batch_tensor(self.class_label, batch, device, torch.long))
        if self.call == "raw":
            return self.module((c_in * noisy).to(dtype), _batch_tensor(c_noise, batch, device, dtype), *args)
        return self.module(noisy.to(dtype), _batch_tensor(float(sigma), batch, device, dtype), *args)


class FlowBackbone(Backbone):
    """Flow-matching / rectified-flow networks (SiT and the like).

    The network sees ``x_t = (1 - t) * (x0 + sigma * eps)`` with
    ``t = sigma / (1 + sigma)``, and is called as ``module(x_t, time)`` or
    ``module(x_t, time, y)`` where ``time`` (shape (n,)) follows the model's
    convention.

    Parameters
    ----------
    module : torch.nn.Module
    time_convention : {"noise_at_one", "data_at_one"}, default="noise_at_one"
        ``"noise_at_one"``: ``x_t = (1 - t) x0 + t eps`` (rectified flow,
        diffusers' flow-matching schedulers). ``"data_at_one"``:
        ``x_t = t x0 + (1 - t) eps`` (SiT's linear path), so the network is
        fed ``1 - t``.
    time_scale : float, default=1.0
        Multiplies the time fed to the network (1000 for diffusers
        transformers that take ``t * num_train_timesteps``).
    class_label : int or None, default=None
        Third argument ``y`` when not None (SiT's null class is 1000).
    vae : diffusers.AutoencoderKL or None, default=None
        Encoder for latent models (SiT-XL/2 uses ``sd-vae-ft-ema``).
    in_channels : int or None, default=None
    default_layer : str or None, default=None
        None guesses (the middle of ``blocks`` for SiT).
    """

    def __init__(self, module, time_convention="noise_at_one", time_scale=1.0, *,
                 class_label=None, vae=None, in_channels=None, default_layer=None):
        if isinstance(vae, (str, os.PathLike)):
            vae = _load_diffusers_model(Path(vae), "AutoencoderKL", subfolder="vae")
        super().__init__(module, vae=vae, in_channels=in_channels, default_layer=default_layer)
        if time_convention not in FLOW_TIME_CONVENTIONS:
            raise ValueError(
                f"time_convention must be one of {FLOW_TIME_CONVENTIONS}; got {time_convention!r}."
            )
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0; got {time_scale!r}.")
        self.time_convention = time_convention
        self.time_scale = float(time_scale)
        self.class_label = class_label

    def time(self, sigma):
        """Time fed to the network for ``sigma`` (convention and scale applied).

        Parameters
        ----------
        sigma : float

        Returns
        -------
        time : float
        """
        return sigma_to_flow_time(sigma, self.time_convention) * self.time_scale

    def sigma_at(self, time):
        """Inverse of :meth:`time`.

        Parameters
        ----------
        time : float

        Returns
        -------
        sigma : float
        """
        return flow_time_to_sigma(time / self.time_scale, self.time_convention)

    def forward(self, noisy, sigma):
        batch, device, dtype = noisy.shape[0], noisy.device, self.dtype
        x_t = (noisy * flow_input_scale(sigma)).to(dtype)
        args = [_batch_tensor(self.time(sigma), batch, device, dtype)]
        if self.class_label is not None:
            args.append(_batch_tensor(self.class_label, batch, device, torch.long))
        return self.module(x_t, *args)


class CallableBackbone(Backbone):
    """Any network, called through a user function.

    Parameters
    ----------
    module : torch.nn.Module
        The network whose layers are read.
    forward_fn : callable
        ``forward_fn(module, noisy_images, sigma)`` runs the network on
        ``noisy_images = x0 + sigma * eps`` (data in [-1, 1] or latents,
        shape (n, C, H, W), on the module's device) at the VE noise level
        ``sigma`` (float); it does any scaling and time conditioning the
        model needs. Its return value is ignored. Pickling the adapter needs
        a picklable function (defined at module level, not a lambda).
    vae : diffusers.AutoencoderKL or None, default=None
    in_channels : int or None, default=None
    default_layer : str or None, default=None
    """

    def __init__(self, module, forward_fn, *, vae=None, in_channels=None, default_layer=None):
        if not callable(forward_fn):
            raise TypeError(f"forward_fn must be callable; got {type(forward_fn).__name__}.")
        super().__init__(module, vae=vae, in_channels=in_channels, default_layer=default_layer)
        self.forward_fn = forward_fn

    def forward(self, noisy, sigma):
        return self.forward_fn(self.module, noisy, float(sigma))


# ------------------------------------------------------------------ loading
_SUPPORTED_CLASSES = {"UNet2DModel": "unet", "DiTTransformer2DModel": "transformer"}


def _read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _scheduler_dir(path):
    """(directory, subfolder) of a saved scheduler config next to a checkpoint, or None."""
    if (path / "scheduler" / "scheduler_config.json").is_file():
        return path, "scheduler"
    if (path / "scheduler_config.json").is_file():
        return path, None
    return None


def _load_scheduler(path):
    from diffusers import DDPMScheduler

    found = _scheduler_dir(path)
    if found is None:
        raise FileNotFoundError(
            f"No scheduler_config.json in {str(path)!r} or its scheduler/ folder."
        )
    directory, subfolder = found
    config = DDPMScheduler.load_config(str(directory), subfolder=subfolder, local_files_only=True)
    # any scheduler's betas config (DDPM, DDIM, DPM-Solver...) gives the training alphas_cumprod
    return DDPMScheduler.from_config(config)


def _load_diffusers_model(path, class_name, subfolder):
    import diffusers

    if not path.is_dir():
        raise FileNotFoundError(
            f"{str(path)!r} is not a directory. Download a checkpoint first, e.g. "
            "`huggingface-cli download google/ddpm-cifar10-32 --local-dir ddpm-cifar10-32`, "
            "and pass that directory."
        )
    use_subfolder = (path / subfolder / "config.json").is_file()
    if not use_subfolder and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"No config.json in {str(path)!r} or {str(path / subfolder)!r}: not a saved "
            f"diffusers {class_name}."
        )
    cls = getattr(diffusers, class_name)
    return cls.from_pretrained(
        str(path), subfolder=subfolder if use_subfolder else None, local_files_only=True
    )


def load_backbone(path, *, scheduler=None, device=None):
    """Load a diffusers checkpoint directory as a backbone adapter.

    Understands a pipeline folder (``model_index.json`` with ``unet/`` or
    ``transformer/``, optional ``vae/`` and ``scheduler/``) and a bare model
    folder (``config.json`` + weights, optional ``scheduler_config.json``).
    Nothing is downloaded.

    Parameters
    ----------
    path : str or os.PathLike
        Local directory.
    scheduler : scheduler, path, array or None, default=None
        Overrides the saved noise schedule.
    device : str or torch.device or None, default=None
        Where to put the modules (CPU when None).

    Returns
    -------
    backbone : UNet2DBackbone or DiTBackbone

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a checkpoint directory.
    ValueError
        If the saved model class is not supported.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{str(path)!r} is not a directory. Download a checkpoint first, e.g. "
            "`huggingface-cli download google/ddpm-cifar10-32 --local-dir ddpm-cifar10-32`."
        )
    class_name = None
    if (path / "model_index.json").is_file():
        index = _read_json(path / "model_index.json")
        for name, component in _SUPPORTED_CLASSES.items():
            entry = index.get(component)
            if entry and (path / component / "config.json").is_file():
                class_name = name
                break
    if class_name is None and (path / "config.json").is_file():
        class_name = _read_json(path / "config.json").get("_class_name")
    if class_name is None:
        for name, component in _SUPPORTED_CLASSES.items():
            if (path / component / "config.json").is_file():
                class_name = _read_json(path / component / "config.json").get("_class_name")
                break
    if class_name == "UNet2DModel":
        backbone = UNet2DBackbone(path, scheduler=scheduler)
    elif class_name == "DiTTransformer2DModel":
        backbone = DiTBackbone(path, scheduler=scheduler)
    else:
        raise ValueError(
            f"Cannot load {str(path)!r}: saved model class {class_name!r} is not one of "
            f"{sorted(_SUPPORTED_CLASSES)}. Load the module yourself and wrap it in "
            "EDMBackbone, FlowBackbone or CallableBackbone."
        )
    if device is not None:
        backbone.to(device)
    return backbone


_LOADED = weakref.WeakValueDictionary()  # resolved path -> adapter still in use


def as_backbone(backbone):
    """Resolve the extractor's ``backbone`` parameter to an adapter.

    Parameters
    ----------
    backbone : Backbone, torch.nn.Module or path
        An adapter is returned as is; a directory is loaded with
        :func:`load_backbone` (once while the loaded adapter is in use); diffusers ``UNet2DModel`` and
        ``DiTTransformer2DModel`` get their adapters; skicr's own denoiser
        (:class:`skicr.models.SmallUNet`, raw, or wrapped in
        :class:`skicr.models.EDMPrecond`) and any module whose
        ``noise_parameterization`` attribute is ``"edm"`` get
        :class:`EDMBackbone`.

    Returns
    -------
    backbone : Backbone

    Raises
    ------
    TypeError
        For a network that is not recognised: wrap it in an adapter.
    """
    if isinstance(backbone, Backbone):
        return backbone
    if isinstance(backbone, (str, os.PathLike)):
        # clones of one extractor (searches, noise scans) share one loaded copy
        key = str(Path(backbone).resolve())
        loaded = _LOADED.get(key)
        if loaded is None:
            loaded = _LOADED[key] = load_backbone(backbone)
        return loaded
    if isinstance(backbone, nn.Module):
        if _is_diffusers(backbone, "UNet2DModel"):
            return UNet2DBackbone(backbone)
        if _is_diffusers(backbone, "DiTTransformer2DModel"):
            return DiTBackbone(backbone)
        if type(backbone).__module__.startswith("skicr.models"):
            from ..models import EDMPrecond, SmallUNet

            if isinstance(backbone, SmallUNet):
                return EDMBackbone(backbone)
            if isinstance(backbone, EDMPrecond):
                inner = _guess_default_layer(backbone.net)
                return EDMBackbone(
                    backbone,
                    sigma_data=backbone.sigma_data,
                    call="preconditioned",
                    default_layer=f"net.{inner}" if inner else None,
                )
        if getattr(backbone, "noise_parameterization", None) == "edm":
            return EDMBackbone(backbone)
        raise TypeError(
            f"Do not know how to call {type(backbone).__name__} at a noise level. Wrap it: "
            "EDMBackbone(net) for EDM-preconditioned networks called as net(c_in * x, c_noise); "
            "FlowBackbone(net, time_convention=...) for flow-matching models (SiT); or "
            "CallableBackbone(net, forward_fn=lambda module, noisy, sigma: ...)."
        )
    raise TypeError(
        "backbone must be a torch.nn.Module, a skicr Backbone adapter or a checkpoint "
        f"directory; got {type(backbone).__name__}."
    )


def list_layers(backbone, max_depth=None):
    """Names of the layers a backbone offers to the extractor.

    Parameters
    ----------
    backbone : Backbone, torch.nn.Module or path
        Anything :class:`FeatureExtractor` accepts as ``backbone``; an
        unrecognised plain module is listed as is.
    max_depth : int or None, default=None
        Keep names with at most this many dotted parts (1: direct children).

    Returns
    -------
    names : list of str
        Submodule names in registration order (``mid_block``,
        ``transformer_blocks.3``, ...).

    Examples
    --------
    >>> from skicr.extraction import list_layers
    >>> from skicr.models import SmallUNet
    >>> list_layers(SmallUNet(), max_depth=1)
    ['noise_embed', 'stem', 'down', 'mid', 'up', 'out']
    """
    if isinstance(backbone, nn.Module) and not (
        _is_diffusers(backbone, "UNet2DModel") or _is_diffusers(backbone, "DiTTransformer2DModel")
    ):
        names = [name for name, _ in backbone.named_modules() if name]
    else:
        names = as_backbone(backbone).layer_names()
    if max_depth is not None:
        if int(max_depth) < 1:
            raise ValueError(f"max_depth must be >= 1; got {max_depth!r}.")
        names = [name for name in names if name.count(".") < int(max_depth)]
    return names
