"""Which adapter a network gets: the registry behind ``as_backbone``.

``as_backbone`` resolves, in order: an adapter (returned as is); a checkpoint
directory (:func:`load_backbone`, loaded once while in use); a module whose
class defines ``__skicr_backbone__(self)`` (the module builds its own adapter:
skicr's :class:`~skicr.models.SmallUNet` and
:class:`~skicr.models.EDMPrecond` do); a class registered with
:func:`register_backbone` (diffusers ``UNet2DModel`` and
``DiTTransformer2DModel`` are, by name, so diffusers is imported only when
such a model is given); a module with ``noise_parameterization = "edm"``.
"""

import os
import weakref
from pathlib import Path

from torch import nn

from ._base import Backbone
from ._dit import DiTBackbone
from ._edm import EDMBackbone
from ._loading import load_backbone
from ._unet2d import UNet2DBackbone

__all__ = ["as_backbone", "list_layers", "register_backbone"]

# (class or "package.module.ClassName", factory) pairs; later registrations win
_REGISTRY = []


def register_backbone(module_class, factory):
    """Register the adapter of a network class, for ``FeatureExtractor(backbone=net)``.

    Parameters
    ----------
    module_class : type or str
        A :class:`torch.nn.Module` subclass, or its qualified name
        ``"package.module.ClassName"`` (resolved only when a module from that
        package is given, so registering costs no import).
    factory : callable
        ``factory(module) -> Backbone``: the adapter for an instance.

    Returns
    -------
    factory : callable
        ``factory``, so that this can decorate it.

    See Also
    --------
    as_backbone : Resolves a network to its adapter.

    Notes
    -----
    A class you write can instead define ``__skicr_backbone__(self)``
    returning its adapter; no registration is needed then.

    Examples
    --------
    >>> from torch import nn
    >>> from skicr.extraction import FlowBackbone, as_backbone, register_backbone
    >>> class MyFlowNet(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.mid = nn.Conv2d(1, 4, 3, padding=1)
    ...     def forward(self, x, t):
    ...         return self.mid(x)
    >>> _ = register_backbone(MyFlowNet, lambda net: FlowBackbone(net, default_layer="mid"))
    >>> type(as_backbone(MyFlowNet())).__name__
    'FlowBackbone'
    """
    if not (isinstance(module_class, str) or isinstance(module_class, type)):
        raise TypeError(
            f"module_class must be a class or a qualified class name; got {type(module_class).__name__}."
        )
    if not callable(factory):
        raise TypeError(f"factory must be callable; got {type(factory).__name__}.")
    _REGISTRY.append((module_class, factory))
    return factory


def _matches(module, module_class):
    if isinstance(module_class, type):
        return isinstance(module, module_class)
    package = module_class.split(".")[0]
    if not type(module).__module__.startswith(package):
        return False  # not from that package: do not import it
    import importlib

    path, _, name = module_class.rpartition(".")
    return isinstance(module, getattr(importlib.import_module(path), name))


def _registered_factory(module):
    for module_class, factory in reversed(_REGISTRY):
        if _matches(module, module_class):
            return factory
    return None


register_backbone("diffusers.UNet2DModel", UNet2DBackbone)
register_backbone("diffusers.DiTTransformer2DModel", DiTBackbone)


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
        factory = _registered_factory(backbone)
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
    if isinstance(backbone, nn.Module) and _registered_factory(backbone) is None \
            and not hasattr(type(backbone), "__skicr_backbone__"):
        names = [name for name, _ in backbone.named_modules() if name]
    else:
        names = as_backbone(backbone).layer_names()
    if max_depth is not None:
        if int(max_depth) < 1:
            raise ValueError(f"max_depth must be >= 1; got {max_depth!r}.")
        names = [name for name in names if name.count(".") < int(max_depth)]
    return names
