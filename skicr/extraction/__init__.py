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
- :class:`CallableBackbone`: any network with a user function;
- :class:`EDMReleaseBackbone`, :class:`SiTReleaseBackbone`,
  :class:`DiTReleaseBackbone`: the seed paper's release networks (NVlabs EDM
  pickles, SiT / DiT state dicts) as rebuilt by :mod:`skicr.models`;
  :func:`load_backbone` reads those files.

:func:`fit_from_loader` streams a :class:`torch.utils.data.DataLoader` (or
any iterable of image batches) into a fitted decomposer in memory that does
not grow with the number of images, on one process or across
``torch.distributed`` ranks; :func:`iter_loader_views` yields the views of
each batch (both live in :mod:`skicr.streaming`, re-exported here).

The view pipeline itself is :func:`iter_view_chunks` over a :class:`ViewSpec`
(what :meth:`FeatureExtractor.view_spec` resolves the parameters to);
:func:`register_backbone` teaches :func:`as_backbone` a new kind of network.
"""

from .._utils.lazy import lazy_exports
from . import backbones
from ._augment import RandomAffine, ViewAugmentation
from .backbones import *  # noqa: F403 - the adapters, re-exported (their list: backbones.__all__)
from ._engine import ViewSpec, extract_views, iter_view_chunks
from ._extractor import FeatureExtractor

# the streaming drivers live in skicr.streaming (which builds on this package); they are
# re-exported here, their first home, on first use, so that importing either package
# never needs the other half-initialised
_STREAMING = ("LoaderViews", "iter_loader_views", "statistics_from_loader", "fit_from_loader")

__all__ = [
    "FeatureExtractor",
    *backbones.__all__,
    "RandomAffine",
    "ViewAugmentation",
    *_STREAMING,
    "ViewSpec",
    "iter_view_chunks",
    "extract_views",
]


__getattr__, __dir__ = lazy_exports(__name__, {name: "skicr.streaming" for name in _STREAMING})
