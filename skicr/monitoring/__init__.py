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
- Online memorization detectors (``DETECTORS``: turning point, CUSUM,
  Page-Hinkley, Mann-Kendall, expansion split, held-out gap), each a function
  of the evaluations so far; :func:`first_alarm` replays one on a stored
  trajectory, :func:`stopping_verdict` states the verdict
  (:class:`StoppingVerdict`). ``DEFAULT_RULE`` is ``ICRMonitor``'s
  early-stopping rule, chosen by the memorization study.
- :class:`ICRMonitorCallback`: the monitor in a PyTorch Lightning ``Trainer``
  (optional extra ``lightning``); :class:`SchedulerSampler`: memorization
  samples of a diffusers model through a diffusers scheduler.

The command ``skicr track`` trains skicr's small denoiser on the digits and
tracks all of it (see ``docs/monitoring.md``).
"""

from .._utils.lazy import lazy_exports

# public name -> private module; imported on first use so that ``skicr track``'s
# parser (skicr.monitoring._cli) loads without scikit-learn's neighbour search
_LAZY = {
    "Alarm": "._detectors",
    "DETECTORS": "._detectors",
    "DEFAULT_RULE": "._detectors",
    "FALLBACK_RULE": "._detectors",
    "STUDY_SETTINGS": "._detectors",
    "ICRMonitor": "._monitor",
    "ICRMonitorCallback": "._lightning",
    "SchedulerSampler": "._diffusers",
    "StoppingVerdict": "._detectors",
    "cusum_detector": "._detectors",
    "expansion_split_detector": "._detectors",
    "first_alarm": "._detectors",
    "heldout_gap_detector": "._detectors",
    "mann_kendall_detector": "._detectors",
    "page_hinkley_detector": "._detectors",
    "run_detector": "._detectors",
    "stopping_verdict": "._detectors",
    "turning_point_detector": "._detectors",
    "TurningPoint": "._turning_point",
    "detect_turning_point": "._turning_point",
    "memorization_ratio": "._memorization",
    "nearest_training_neighbors": "._memorization",
    "plot_retrieval_examples": "._plot",
    "plot_training_trajectory": "._plot",
    "retrieval_accuracy": "._retrieval",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
