"""Recipes: the measured defaults of ``skicr scan`` and ``skicr track``, in one home.

The command line, the benchmarks, the studies, the docs and the gallery
import these instead of copying them:

- :data:`SCAN_DEFAULTS`, :func:`augment_presets`, :func:`make_probe`,
  :func:`parse_sigmas`: the noise-level scan (justified in ``docs/scan.md``);
- :data:`TRACK_DEFAULTS`: the training monitor's run (``docs/monitoring.md``).

The layer search's default procedure and what the layer study measured for it
(``LAYER_SEARCH_DEFAULTS``, ``LAYER_STUDY``) live with the selector that runs them,
in :mod:`skicr.model_selection`, so that the library and the command share them.
"""

import numpy as np

from ._utils.validation import check_sigma_grid

__all__ = [
    "SCAN_DEFAULTS",
    "TRACK_DEFAULTS",
    "PROBE_C",
    "PROBE_MAX_ITER",
    "augment_presets",
    "make_probe",
    "parse_sigmas",
]

#: defaults of ``skicr scan`` (their measured justification is in docs/scan.md)
SCAN_DEFAULTS = {
    "sigmas": "0.005:5:12",
    "layer": None,
    "pooling": "mean",
    "views": 4,
    "n_images": 2000,  # all 1797 digits; caps a user's folder
    "cv": 5,
    "seed": 0,
    "batch_size": 256,
    "augment": "default",
    "scoring": "icr",
    # the zoo study's round-2 winner (docs/noise_level_study.md): held-out ICR with the
    # decomposer's ridge at tau = 1e-2, the smallest sigma within one standard error
    "rule": "one_se_low",
    "tau": 1e-2,
}

#: defaults of ``skicr track``: a run of a few CPU minutes on the full digits
TRACK_DEFAULTS = {
    "subset": None,
    "steps": 1500,
    "eval_every": 100,
    "batch_size": 64,
    "lr": 2e-3,
    "ema_decay": 0.999,
    "channels": [16, 32],
    "mid_channels": 48,
    "sigma": 0.2,
    "layer": None,
    "pooling": "auto",
    "views": 4,
    "icr_images": 512,
    "samples": 128,
    "sampler_steps": 18,
    "warmup_steps": 300,
    "min_rise": 0.02,
    "seed": 0,
}

#: the probe's inverse regularisation strength (docs/scan.md measures it)
PROBE_C = 0.1
#: the probe's iteration cap (converged on the digits' features well before it)
PROBE_MAX_ITER = 300


def augment_presets():
    """Named augmentation strengths of ``skicr scan --augment`` (as measured in docs/scan.md).

    Returns
    -------
    presets : dict
        name -> the ``augment`` argument of :class:`skicr.FeatureExtractor`.

    Examples
    --------
    >>> from skicr.recipes import augment_presets
    >>> sorted(augment_presets())
    ['default', 'none', 'strong', 'weak']
    """
    from skicr.extraction import RandomAffine

    return {
        "none": None,  # noise-only views
        "weak": RandomAffine(scale=(0.85, 1.0), rotation=7.5),
        "default": "default",  # RandomAffine(scale=(0.6, 1.0), rotation=15)
        "strong": RandomAffine(scale=(0.5, 1.0), rotation=30.0, translation=0.1),
    }


def make_probe(C=PROBE_C):
    """The probe of ``skicr scan``: standardised features, multinomial logistic regression.

    The scan, the benchmarks, the studies and the gallery all use this one
    (docs/scan.md measures why ``C=0.1``).

    Parameters
    ----------
    C : float, default=0.1
        Inverse regularisation strength of the logistic regression.

    Returns
    -------
    probe : sklearn.pipeline.Pipeline
        ``StandardScaler()`` then ``LogisticRegression(C=C, max_iter=300)``.

    Examples
    --------
    >>> from skicr.recipes import make_probe
    >>> make_probe().steps[-1][1]
    LogisticRegression(C=0.1, max_iter=300)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=PROBE_MAX_ITER))


def parse_sigmas(text):
    """Parse ``--sigmas``: ``a,b,c`` (a list) or ``min:max:num`` (log-spaced).

    Parameters
    ----------
    text : str
        The option's value.

    Returns
    -------
    sigmas : ndarray of shape (n_sigmas,)
        Positive, distinct noise levels, in the given (or increasing) order.

    Raises
    ------
    ValueError
        With a message naming the problem (the CLI shows it as an argument error).

    Examples
    --------
    >>> from skicr.recipes import parse_sigmas
    >>> parse_sigmas("0.01:1:3")
    array([0.01, 0.1 , 1.  ])
    """
    text = text.strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            low, high, num = float(parts[0]), float(parts[1]), int(parts[2])
        else:
            sigmas = np.asarray([float(s) for s in text.split(",") if s.strip()])
    except ValueError:
        raise ValueError(
            f"expected a comma-separated list of numbers (0.05,0.1,0.2) or min:max:num "
            f"(0.005:5:12); got {text!r}."
        ) from None
    if ":" in text:
        if num < 1:
            raise ValueError(f"the number of sigmas must be >= 1; got {num}.")
        if not (low > 0 and high > 0):
            raise ValueError(f"sigmas must be positive numbers; got min:max {low:g}:{high:g} in {text!r}.")
        if not (0 < low < high) and not (num == 1 and 0 < low == high):
            raise ValueError(f"min:max:num needs 0 < min < max; got {text!r}.")
        sigmas = np.geomspace(low, high, num)
    if sigmas.size == 0:
        raise ValueError("the sigma grid is empty.")
    if not np.all(np.isfinite(sigmas)) or np.any(sigmas <= 0):
        raise ValueError(f"sigmas must be positive numbers; got {text!r}.")
    if np.unique(sigmas).size != sigmas.size:
        raise ValueError(f"sigmas contains repeated values: {text!r}.")
    return check_sigma_grid(sigmas)  # the range every backbone can run at
