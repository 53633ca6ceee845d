"""Alias of :mod:`skicr.extraction.backbones` (the adapters' old module): old pickles name it."""

from .backbones import (  # noqa: F401
    Backbone,
    CallableBackbone,
    DiTBackbone,
    EDMBackbone,
    FlowBackbone,
    UNet2DBackbone,
    as_backbone,
    list_layers,
    load_backbone,
)
from .backbones._vp import _VPMixin  # noqa: F401
