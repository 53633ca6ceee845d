"""skicr: label-free evaluation of diffusion-model representations.

A frozen diffusion denoiser is used as a feature extractor at a noise level
sigma. Several views of each image (augmentation + fresh Gaussian noise) are
split into an invariant part (the per-image mean) and a residual. The
generalized spectrum of their covariances is summarised by the Invariant
Contamination Ratio ``ICR = 1 / (1 + mean(lambda))`` (lower is cleaner).

Public names are imported lazily so that ``import skicr`` stays cheap; each
one lives in a private module and is re-exported here.
"""

from ._utils.lazy import lazy_exports

__version__ = "0.1.0.dev0"

# public name -> module that defines it
_LAZY = {
    # numerical core
    "InvariantResidualDecomposer": "skicr.decomposition",
    "ICRScorer": "skicr.scoring",
    "icr_scorer": "skicr.scoring",
    "icr_score": "skicr.metrics",
    # extraction
    "FeatureExtractor": "skicr.extraction",
    "list_layers": "skicr.extraction",
    "load_backbone": "skicr.extraction",
    "fit_from_loader": "skicr.streaming",
    # selection and monitoring
    "NoiseLevelSelector": "skicr.model_selection",
    "StreamingNoiseLevelSelector": "skicr.model_selection",
    "NoiseLevelDecisionWarning": "skicr.model_selection",
    "NoiseLevelGridWarning": "skicr.model_selection",
    "LayerChoiceWarning": "skicr.model_selection",
    "ICRMonitor": "skicr.monitoring",
    "memorization_ratio": "skicr.monitoring",
}

_SUBMODULES = [
    "metrics",
    "decomposition",
    "scoring",
    "extraction",
    "models",
    "datasets",
    "model_selection",
    "monitoring",
    "plotting",
    "recipes",
    "streaming",
    "views",
]

__all__ = sorted(_LAZY) + _SUBMODULES


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, submodules=_SUBMODULES)
