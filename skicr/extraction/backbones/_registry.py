"""The registration hooks: which adapter a network class gets, which reader a file gets.

``register_backbone`` maps a network class to its adapter factory;
``register_file_reader`` adds a reader of checkpoint files to
:func:`load_backbone`. Both accept a qualified name (``"diffusers.UNet2DModel"``,
``"skicr.models.load_release_file"``), resolved only when it is needed, so that
registering imports nothing: diffusers is imported only when a diffusers model
is given, and :mod:`skicr.models`, which builds on this package, only when a
file is loaded.

:func:`as_backbone` (``_resolve``) resolves, in order: an adapter (returned as is); a checkpoint
directory (:func:`load_backbone`, loaded once while in use); a module whose
class defines ``__skicr_backbone__(self)`` (the module builds its own adapter:
skicr's :class:`~skicr.models.SmallUNet` and
:class:`~skicr.models.EDMPrecond` do); a class registered with
:func:`register_backbone` (diffusers ``UNet2DModel`` and
``DiTTransformer2DModel`` are, by name, so diffusers is imported only when
such a model is given); a module with ``noise_parameterization = "edm"``.
"""

import importlib

from ._dit import DiTBackbone
from ._unet2d import UNet2DBackbone

__all__ = ["register_backbone", "register_file_reader", "registered_factory", "file_reader"]

# (class or "package.module.ClassName", factory) pairs; later registrations win
_REGISTRY = []
# readers of checkpoint files (callables or "package.module.function"); the last one reads
_FILE_READERS = []


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


def _resolve(qualified_name):
    """The object a ``"package.module.name"`` string names (imported now)."""
    path, _, name = qualified_name.rpartition(".")
    return getattr(importlib.import_module(path), name)


def _matches(module, module_class):
    if isinstance(module_class, type):
        return isinstance(module, module_class)
    package = module_class.split(".")[0]
    if not type(module).__module__.startswith(package):
        return False  # not from that package: do not import it
    return isinstance(module, _resolve(module_class))


def registered_factory(module):
    """The adapter factory registered for ``module``'s class, or None.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    factory : callable or None
    """
    for module_class, factory in reversed(_REGISTRY):
        if _matches(module, module_class):
            return factory
    return None


def register_file_reader(reader):
    """Set the reader of checkpoint files for :func:`load_backbone` (the last one set reads).

    Parameters
    ----------
    reader : callable or str
        ``reader(path, arch, *, model_kwargs, class_label, vae, latent_scale,
        device) -> Backbone``, or its qualified name
        ``"package.module.function"`` (imported on the first file loaded).

    Returns
    -------
    reader : callable or str
        ``reader``, so that this can decorate it.
    """
    if not (isinstance(reader, str) or callable(reader)):
        raise TypeError(f"reader must be callable or a qualified name; got {type(reader).__name__}.")
    _FILE_READERS.append(reader)
    return reader


def file_reader():
    """The reader of checkpoint files last registered, resolved to a callable.

    Returns
    -------
    reader : callable
    """
    reader = _FILE_READERS[-1]
    return _resolve(reader) if isinstance(reader, str) else reader


register_backbone("diffusers.UNet2DModel", UNet2DBackbone)
register_backbone("diffusers.DiTTransformer2DModel", DiTBackbone)
# skicr's reader of NVlabs EDM pickles, DiT / SiT release files and skicr weights files
register_file_reader("skicr.models.load_release_file")
