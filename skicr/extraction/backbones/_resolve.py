"""Which adapter anything the extractor is given gets: :func:`as_backbone`, :func:`list_layers`.

The order of resolution is described in ``_registry`` (the registration hooks
it reads).
"""

import os
import weakref
from pathlib import Path

from torch import nn

from ._base import Backbone
from ._edm import EDMBackbone
from ._loading import load_backbone
from ._registry import registered_factory

__all__ = ["as_backbone", "list_layers"]


_LOADED = weakref.WeakValueDictionary()  # resolved path -> adapter still in use


def as_backbone(backbone):
    """Resolve the extractor's ``backbone`` parameter to an adapter.

    Parameters
    ----------
    backbone : Backbone, torch.nn.Module or path
        An adapter is returned as is; a directory is loaded with
        :func:`load_backbone` (once while the loaded adapter is in use); a
        module whose class defines ``__skicr_backbone__`` gets the adapter
        that method returns (skicr's own denoiser,
        :class:`skicr.models.SmallUNet`, raw or wrapped in
        :class:`skicr.models.EDMPrecond`); a class registered with
        :func:`register_backbone` (diffusers ``UNet2DModel`` and
        ``DiTTransformer2DModel``) gets its factory's adapter; any module
        whose ``noise_parameterization`` attribute is ``"edm"`` gets
        :class:`EDMBackbone`.

    Returns
    -------
    backbone : Backbone

    Raises
    ------
    TypeError
        For a network that is not recognised: wrap it in an adapter.

    Examples
    --------
    >>> from skicr.extraction import EDMBackbone, as_backbone
    >>> from skicr.models import SmallUNet
    >>> backbone = as_backbone(SmallUNet(channels=(8, 16), mid_channels=16))
    >>> isinstance(backbone, EDMBackbone)      # skicr's EDM network: the EDM adapter
    True
    >>> as_backbone(backbone) is backbone       # adapters pass through
    True
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
        hook = getattr(type(backbone), "__skicr_backbone__", None)
        if hook is not None:
            adapter = hook(backbone)
            if not isinstance(adapter, Backbone):
                raise TypeError(
                    f"{type(backbone).__name__}.__skicr_backbone__ returned "
                    f"{type(adapter).__name__}, not a skicr Backbone adapter."
                )
            return adapter
        factory = registered_factory(backbone)
        if factory is not None:
            return factory(backbone)
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
    if isinstance(backbone, nn.Module) and registered_factory(backbone) is None \
            and not hasattr(type(backbone), "__skicr_backbone__"):
        names = [name for name, _ in backbone.named_modules() if name]
    else:
        names = as_backbone(backbone).layer_names()
    if max_depth is not None:
        if int(max_depth) < 1:
            raise ValueError(f"max_depth must be >= 1; got {max_depth!r}.")
        names = [name for name in names if name.count(".") < int(max_depth)]
    return names
