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

:func:`fit_from_loader` streams a :class:`torch.utils.data.DataLoader` (or
any iterable of image batches) into a fitted decomposer in memory that does
not grow with the number of images, on one process or across
``torch.distributed`` ranks; :func:`iter_loader_views` yields the views of
each batch.
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
from ._streaming import LoaderViews, fit_from_loader, iter_loader_views, statistics_from_loader

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
    "iter_loader_views",
    "statistics_from_loader",
    "fit_from_loader",
    "LoaderViews",
]
