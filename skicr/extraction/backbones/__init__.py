"""Backbone adapters: one small protocol over every kind of denoiser.

- :mod:`._base`: the protocol, :class:`Backbone`;
- one model family per file: :class:`UNet2DBackbone` (``_unet2d``),
  :class:`DiTBackbone` (``_dit``), :class:`EDMBackbone` (``_edm``),
  :class:`FlowBackbone` (``_flow``), :class:`CallableBackbone`
  (``_callable``), over the VP schedule helpers of ``_vp``; the seed
  paper's release networks: :class:`EDMReleaseBackbone` (``_edm_release``),
  :class:`SiTReleaseBackbone` and :class:`DiTReleaseBackbone`
  (``_transformer_release``);
- ``_diffusers`` and ``_loading``: diffusers checkpoint folders on disk,
  :func:`load_backbone`;
- ``_registry``: the registration hooks (:func:`register_backbone` for
  network classes, ``register_file_reader`` for checkpoint files);
  ``_resolve``: which adapter a network gets (:func:`as_backbone`,
  :func:`list_layers`).

To support a new kind of network, write an adapter (a :class:`Backbone`
subclass with ``forward(noisy, sigma)``) in a file of its own and either
register it for the network's class with :func:`register_backbone`, or give
the network's class a ``__skicr_backbone__(self)`` method that returns it.
"""

from ._base import Backbone
from ._callable import CallableBackbone
from ._dit import DiTBackbone
from ._edm import EDMBackbone
from ._edm_release import EDMReleaseBackbone
from ._flow import FlowBackbone
from ._loading import load_backbone
from ._registry import register_backbone
from ._resolve import as_backbone, list_layers
from ._transformer_release import DiTReleaseBackbone, SiTReleaseBackbone, dit_linear_alphas_cumprod
from ._unet2d import UNet2DBackbone

__all__ = [
    "Backbone",
    "UNet2DBackbone",
    "DiTBackbone",
    "EDMBackbone",
    "FlowBackbone",
    "CallableBackbone",
    "EDMReleaseBackbone",
    "SiTReleaseBackbone",
    "DiTReleaseBackbone",
    "dit_linear_alphas_cumprod",
    "as_backbone",
    "load_backbone",
    "list_layers",
    "register_backbone",
]
