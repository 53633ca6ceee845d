"""The backbone protocol: what :class:`~skicr.extraction.FeatureExtractor` needs of a network.

An adapter wraps a frozen network and knows three things:

- which of its submodules are layers (``layer_names``, ``default_layer``);
- how to bring images in ``[-1, 1]`` to the space noise is added in
  (``prepare``: identity, or a VAE encoder for latent models);
- how to call the network on ``x0 + sigma * eps`` (``forward``), mapping the
  VE ``sigma`` to the model's own input scaling and time conditioning (see
  :mod:`skicr.extraction._noise`).

The extractor hooks the requested layer and stops the forward pass there.
One model family per file (``_unet2d``, ``_dit``, ``_edm``, ``_flow``,
``_callable``); ``_registry`` maps networks to their adapters.
"""

import difflib

import torch
from torch import nn

from ..._utils.serialization import archive_modules, restore_modules

__all__ = ["Backbone"]


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

    Examples
    --------
    A subclass implements ``forward(noisy, sigma)``: how the network is called
    on images with noise of std ``sigma`` (data in [-1, 1]):

    >>> import numpy as np
    >>> import torch
    >>> from skicr.extraction import Backbone, FeatureExtractor
    >>> class PlainBackbone(Backbone):
    ...     def forward(self, noisy, sigma):
    ...         return self.module(noisy)
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU())
    >>> images = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    >>> backbone = PlainBackbone(net, default_layer="0")
    >>> FeatureExtractor(backbone, n_views=2, random_state=0).fit(images).transform_views(
    ...     images).shape
    (4, 2, 3)
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
