"""Feature extraction from frozen diffusion backbones.

:class:`FeatureExtractor` turns images into grouped view features: several
views of each image (augmentation + Gaussian noise at a VE noise level
``sigma``) pass through a frozen denoiser up to one layer, whose output is
pooled. Backbone adapters map ``sigma`` to each model family's own
parameterisation:

- :class:`UNet2DBackbone`: diffusers ``UNet2DModel`` (DDPM, VP);
- :class:`DiTBackbone`: diffusers ``DiTTransformer2DModel`` (VP, tokens,
  optional VAE);
- :class:`EDMBackbone`: EDM-preconditioned networks (skicr's own denoiser);
- :class:`FlowBackbone`: flow-matching / rectified-flow networks (SiT);
- :class:`CallableBackbone`: any network with a user function.
"""

from ._augment import RandomAffine, ViewAugmentation
from ._backbones import (
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
from ._extractor import FeatureExtractor

__all__ = [
    "FeatureExtractor",
    "list_layers",
    "load_backbone",
    "as_backbone",
    "Backbone",
    "UNet2DBackbone",
    "DiTBackbone",
    "EDMBackbone",
    "FlowBackbone",
    "CallableBackbone",
    "RandomAffine",
    "ViewAugmentation",
]
