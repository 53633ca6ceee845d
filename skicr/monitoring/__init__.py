"""Monitoring diffusion training: ICR across checkpoints, memorization, early stopping.

The seed paper's second use of ICR: measured at a fixed noise level on fixed
views while a model trains, ICR keeps falling when data are plentiful; with
little data it turns upward, and its minimum comes before the memorization
ratio starts to rise - a warning that needs no sampling.

- :class:`ICRMonitor`: ICR, ``tr(Sigma_s)``, ``tr(Sigma_xi)`` and the mean
  invariant SNR of a model at each call (a training callback), or of a list
  of checkpoint files; optionally the memorization ratio of samples drawn
  with a fixed seed.
- :func:`memorization_ratio`: fraction of generated samples whose nearest
  training sample is much closer than the second nearest (Gu et al. 2023).
- :func:`detect_turning_point`: the early-stopping signal on a trajectory
  (its smoothed minimum, and how sure it is that it has turned up).
- :func:`retrieval_accuracy`: nearest-neighbour label agreement by the
  invariant part ``s`` and by the residual ``xi`` (the seed paper's Fig. 2).

The command ``skicr track`` trains skicr's small denoiser on the digits and
tracks all of it (see ``docs/monitoring.md``).
"""

import importlib

# public name -> private module; imported on first use so that ``skicr track``'s
# parser (skicr.monitoring._cli) loads without scikit-learn's neighbour search
_LAZY = {
    "ICRMonitor": "._monitor",
    "TurningPoint": "._turning_point",
    "detect_turning_point": "._turning_point",
    "memorization_ratio": "._memorization",
    "nearest_training_neighbors": "._memorization",
    "plot_retrieval_examples": "._plot",
    "plot_training_trajectory": "._plot",
    "retrieval_accuracy": "._retrieval",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'skicr.monitoring' has no attribute {name!r}")


def __dir__():
    return __all__
