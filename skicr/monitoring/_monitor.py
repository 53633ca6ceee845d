"""ICRMonitor: ICR of a model across training, at fixed noise level and fixed views."""

import re
import time
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from .._utils.images import unit_images
from .._utils.serialization import CONTENT_HASH_KEY, read_torch_file, verify_seal
from .._utils.validation import check_int
from ..metrics import accumulate, decompose
from ._memorization import _distance_ratios, nearest_training_neighbors
from ._detectors import (
    DEFAULT_RULE,
    DETECTORS,
    FALLBACK_RULE,
    STUDY_SETTINGS,
    _check_rule_params,
    run_detector,
    stopping_verdict,
)
from ._turning_point import _check_turning_point_params, detect_turning_point

__all__ = ["ICRMonitor"]

# the columns every row has, in order (memorization columns follow when enabled)
_COLUMNS = [
    "step", "icr", "mean_snr", "trace_s", "trace_xi", "trace_h", "invariant_share",
    "n_images", "n_views", "n_features",
]


_EXTRACTOR_SHORTCUTS = ["layer", "sigma", "n_views", "augment", "pooling", "batch_size", "random_state"]
_DECOMPOSER_SHORTCUTS = ["tau", "tau_mode", "bias_correction", "covariance_estimator"]


def _extractor_template(extractor, shortcuts):
    """The extractor template with the shortcut settings (popped from ``shortcuts``), checked now."""
    import torch
    from sklearn.base import clone

    from ..extraction import FeatureExtractor

    if extractor is None:
        extractor = FeatureExtractor(None, batch_size=256, random_state=0)
    elif not isinstance(extractor, FeatureExtractor):
        raise TypeError(
            f"extractor must be a skicr.FeatureExtractor or None; got {type(extractor).__name__}."
        )
    settings = {name: shortcuts.pop(name) for name in _EXTRACTOR_SHORTCUTS if name in shortcuts}
    extractor = clone(extractor).set_params(**settings)
    # the extractor's own constraints, on a stand-in network: fail now, not at the first call
    clone(extractor).set_params(backbone=torch.nn.Identity())._validate_params()
    seed = extractor.random_state
    if not isinstance(seed, Integral) or isinstance(seed, bool):
        raise ValueError(
            "the monitor needs an int random_state (on the extractor) so that every "
            f"evaluation measures the same views; got {seed!r}."
        )
    if extractor.n_views < 2:
        raise ValueError(f"ICR needs at least 2 views per image; got n_views={extractor.n_views}.")
    if not extractor.sigma > 0:
        raise ValueError(f"sigma must be a number > 0; got {extractor.sigma!r}.")
    return extractor


def _decomposer_template(decomposer, shortcuts):
    """The decomposer template with the shortcut settings (popped from ``shortcuts``), checked now."""
    from sklearn.base import clone

    from ..decomposition import InvariantResidualDecomposer

    if decomposer is None:
        decomposer = InvariantResidualDecomposer()
    elif not isinstance(decomposer, InvariantResidualDecomposer):
        raise TypeError(
            "decomposer must be a skicr.InvariantResidualDecomposer or None; got "
            f"{type(decomposer).__name__}."
        )
    settings = {name: shortcuts.pop(name) for name in _DECOMPOSER_SHORTCUTS if name in shortcuts}
    decomposer = clone(decomposer).set_params(**settings)
    decomposer._validate_params()  # its own constraints: tau, tau_mode, the estimator
    return decomposer


def _checkpoint_step(path, payload, position):
    """The training step of a checkpoint: stored metadata, else the last number in its name."""
    if isinstance(payload, dict):
        for holder in (payload, payload.get("metadata")):
            if isinstance(holder, dict) and isinstance(holder.get("step"), Integral):
                return int(holder["step"])
    numbers = re.findall(r"\d+", Path(path).stem)
    return int(numbers[-1]) if numbers else position


def _state_dict_of(payload, path):
    """The state dict inside a checkpoint: the file itself or a usual key of it."""
    if isinstance(payload, dict):
        if payload and all(hasattr(v, "shape") for v in payload.values()):
            return payload
        for key in ("ema", "state_dict", "model", "net", "ema_net"):
            inner = payload.get(key)
            if isinstance(inner, dict) and inner and all(hasattr(v, "shape") for v in inner.values()):
                return inner
    raise ValueError(
        f"{str(path)!r} holds no state dict (a dict of tensors, or one under the key "
        "'ema', 'state_dict', 'model', 'net' or 'ema_net')."
    )


def _is_diffusers_unet(model):
    """A diffusers UNet2DModel, raw or in skicr's adapter."""
    from ..extraction import UNet2DBackbone

    if isinstance(model, UNet2DBackbone):
        return True
    return type(model).__module__.startswith("diffusers") and type(model).__name__ == "UNet2DModel"


class ICRMonitor:
    """ICR of a diffusion model across training, at a fixed noise level and fixed views.

    Each evaluation extracts the same views of the same images (one seed,
    so points are comparable) from one layer of the model, and records the
    Invariant Contamination Ratio with the covariance traces that show where
    the model's expansion goes: ``tr(Sigma_s)`` (invariant structure) versus
    ``tr(Sigma_xi)`` (view-specific residual). Optionally, samples drawn with
    a fixed seed give the memorization ratio at the same steps.

    Use it as a callback: ``monitor(step, model)`` from a plain PyTorch
    training loop, or ``train_denoiser(..., callback=monitor)`` (which passes
    the EMA network); or on saved weights with :meth:`from_checkpoints`.
    Results are a pandas DataFrame (:attr:`history_`), and
    :meth:`turning_point` gives the early-stopping signal (ICR's minimum and
    whether it has turned up).

    Parameters are checked when the monitor is built, not at the first
    evaluation deep into training.

    Parameters
    ----------
    images : array-like of shape (n_images, C, H, W)
        The images whose views are measured, usually (a subset of) the
        training images; uint8 in [0, 255] or float in [0, 1].
    extractor : FeatureExtractor or None, default=None
        A template whose settings (layer, sigma, views, augmentation,
        pooling, batch size, device, random_state) are used for every
        evaluation; its backbone is replaced by the evaluated model. Its
        ``random_state`` must be an int. None:
        ``FeatureExtractor(None, batch_size=256, random_state=0)``.
    decomposer : InvariantResidualDecomposer or None, default=None
        A template whose settings (``tau``, ``tau_mode``,
        ``covariance_estimator``, ``bias_correction``) define the ICR of every
        evaluation. None: the decomposer's defaults.
    n_samples : int, default=0
        Samples drawn at each evaluation for the memorization ratio; 0
        disables it.
    sampler_steps : int, default=18
        Noise levels of EDM's Heun sampler (:func:`skicr.models.edm_sampler`).
    sampler_seed : int, default=0
        Seed of the samples (the same noise at every evaluation).
    training_images : array-like or None, default=None
        The full training set the samples are compared with; None uses
        ``images``.
    heldout_images : array-like or None, default=None
        Images never trained on: each evaluation also measures ICR and the
        traces on them, with the same settings (columns ``heldout_icr``,
        ``heldout_trace_s``, ``heldout_trace_xi``); needed by the
        ``"heldout_gap"`` rule. Use as many as ``images`` so that the gap
        compares equal sample sizes.
    memorization_threshold : float, default=1/3
        A sample is memorized when ``d1 / d2`` is below it (see
        :func:`memorization_ratio`).
    sampler : callable or None, default=None
        ``sampler(model) -> images`` in [0, 1] of shape (n, C, H, W), to
        replace the default sampler (then ``n_samples``, ``sampler_steps``
        and ``sampler_seed`` are not used, and the memorization ratio is
        computed at every evaluation). None: EDM's Heun sampler for EDM
        networks, a :class:`SchedulerSampler` (DDIM) for diffusers
        ``UNet2DModel`` networks.
    scheduler : diffusers scheduler or None, default=None
        For diffusers ``UNet2DModel`` networks: the training noise schedule. A raw
        ``UNet2DModel`` is then read through
        :class:`~skicr.extraction.UNet2DBackbone` with it (``sigma`` mapped to
        the training schedule's timestep), and the memorization samples are
        drawn with DDIM built from its config (``sampler_steps`` steps). None:
        the adapter's default, ``DDPMScheduler()``.
    early_stopping : bool or str, default=False
        The early-stopping rule. True: the rule chosen by the memorization
        study (``docs/monitoring.md``), ``DEFAULT_RULE`` (``"heldout_gap"``,
        which needs ``heldout_images``) or, without held-out images,
        ``FALLBACK_RULE`` (``"expansion_split"``). A name picks a detector of
        ``skicr.monitoring.DETECTORS`` (``"turning_point"``, ``"cusum"``,
        ``"page_hinkley"``, ``"mann_kendall"``, ``"expansion_split"``,
        ``"heldout_gap"``). False turns it off. Once the rule fires, every call returns True (which
        stops :func:`~skicr.models.train_denoiser`); ``stopped_at_`` and
        ``early_stopping_checkpoint_`` say when and what to keep.
    early_stopping_warmup : int or None, default=None
        Evaluations before this step are recorded but not tested: ICR of a
        freshly initialised network moves up and down in the first hundreds
        of steps. None: the study's warm-up for the rule
        (``STUDY_SETTINGS``).
    early_stopping_params : dict or None, default=None
        Parameters of the rule (see the detector's function); None: the
        study's settings for it (``STUDY_SETTINGS``), or for
        ``"turning_point"`` the ``turning_point_params`` when given.
    turning_point_params : dict or None, default=None
        Keyword arguments of :func:`detect_turning_point` (``alpha``,
        ``min_rise``, ``window``...) used by :meth:`turning_point`.
    device : str, torch.device or None, default=None
        Where the extraction runs; None: the model's device.
    verbose : bool, default=False
        Print one line per evaluation (through tqdm, so progress bars stay
        intact).
    **template_params
        Shortcuts for the templates' parameters, set on (a clone of) the
        template they belong to: the extractor's ``layer``, ``sigma``,
        ``n_views``, ``augment``, ``pooling``, ``batch_size``,
        ``random_state``; the decomposer's ``tau``, ``tau_mode``,
        ``bias_correction``, ``covariance_estimator``.
        ``ICRMonitor(images, sigma=0.3, n_views=2)`` is
        ``ICRMonitor(images, FeatureExtractor(None, sigma=0.3, n_views=2,
        batch_size=256, random_state=0))``.

    Attributes
    ----------
    history_ : pandas.DataFrame
        One row per evaluation: ``step``, ``icr``, ``mean_snr`` (mean
        invariant SNR), ``trace_s``, ``trace_xi``, ``trace_h``
        (``trace_s + trace_xi``), ``invariant_share`` (``trace_s /
        trace_h``), ``n_images``, ``n_views``, ``n_features``, with
        ``heldout_images`` ``heldout_icr``, ``heldout_trace_s`` and
        ``heldout_trace_xi``, with memorization ``memorization_ratio`` and ``nn_distance`` (mean
        distance of a sample to its nearest training image, pixels in [0, 1]),
        then ``seconds`` (time of the evaluation) and, for checkpoints,
        ``checkpoint``.
    stopped_at_ : int or None
        Step at which early stopping fired.
    early_stopping_checkpoint_ : int or None
        The checkpoint the rule recommends keeping when it fired (its
        estimate of where ICR started to rise).

    See Also
    --------
    memorization_ratio : the nearest-neighbour copy test.
    detect_turning_point : the early-stopping test on a trajectory.

    Examples
    --------
    >>> from skicr.datasets import load_digits_images
    >>> from skicr.models import train_denoiser
    >>> from skicr.monitoring import ICRMonitor
    >>> images = load_digits_images(return_y=False)[:64]
    >>> monitor = ICRMonitor(images, sigma=0.2, n_views=2)
    >>> result = train_denoiser(images, n_steps=4, batch_size=16, progress=False,
    ...                         callback=monitor, callback_every=2)
    >>> monitor.history_[["step", "icr"]].shape
    (2, 2)
    """

    def __init__(
        self,
        images,
        extractor=None,
        decomposer=None,
        *,
        n_samples=0,
        sampler_steps=18,
        sampler_seed=0,
        training_images=None,
        heldout_images=None,
        memorization_threshold=1 / 3,
        sampler=None,
        scheduler=None,
        early_stopping=False,
        early_stopping_warmup=None,
        early_stopping_params=None,
        turning_point_params=None,
        device=None,
        verbose=False,
        **template_params,
    ):
        self.extractor = _extractor_template(extractor, template_params)
        self.decomposer = _decomposer_template(decomposer, template_params)
        if template_params:
            raise TypeError(
                f"ICRMonitor got unexpected keyword arguments {sorted(template_params)}; the "
                f"templates' shortcuts are {sorted(_EXTRACTOR_SHORTCUTS + _DECOMPOSER_SHORTCUTS)}."
            )
        self.images = images
        self._image_array = unit_images(images, "images", min_images=2)

        self.n_samples = check_int("n_samples", n_samples, 0)
        self.sampler_steps = check_int("sampler_steps", sampler_steps, 2)
        self.sampler_seed = check_int("sampler_seed", sampler_seed, 0)
        if sampler is not None and not callable(sampler):
            raise TypeError(f"sampler must be callable or None; got {type(sampler).__name__}.")
        self.sampler = sampler
        if not isinstance(memorization_threshold, Real) or not 0 < memorization_threshold <= 1:
            raise ValueError(
                f"memorization_threshold must be in (0, 1]; got {memorization_threshold!r}."
            )
        self.memorization_threshold = float(memorization_threshold)
        self.training_images = training_images
        self._training_array = None
        if self.memorizes:
            self._training_array = self._image_array if training_images is None else unit_images(
                training_images, "training_images", min_images=2
            )

        if scheduler is not None and not callable(getattr(scheduler, "set_timesteps", None)):
            raise TypeError(
                f"scheduler must be a diffusers scheduler or None; got {type(scheduler).__name__}."
            )
        self.scheduler = scheduler
        # an unknown key or a bad value fails now, not at the first test deep into training
        self.turning_point_params = _check_turning_point_params(turning_point_params)
        self.heldout_images = heldout_images
        self._heldout_array = None if heldout_images is None else unit_images(
            heldout_images, "heldout_images", min_images=2)
        if early_stopping is True:
            rule = self._study_rule()
        elif early_stopping is False or early_stopping is None:
            rule = None
        elif isinstance(early_stopping, str) and early_stopping in DETECTORS:
            rule = early_stopping
        else:
            raise ValueError(
                f"early_stopping must be True, False or one of {sorted(DETECTORS)}; got "
                f"{early_stopping!r}."
            )
        if rule == "heldout_gap" and self._heldout_array is None:
            raise ValueError("the 'heldout_gap' rule needs heldout_images.")
        self.early_stopping = early_stopping
        self.early_stopping_rule = rule
        if rule is None:
            self.early_stopping_params = {}
        else:
            if early_stopping_params is None:
                early_stopping_params = (
                    self.turning_point_params if rule == "turning_point"
                    and self.turning_point_params else STUDY_SETTINGS[rule][0])
            self.early_stopping_params = _check_rule_params(rule, early_stopping_params)
        if early_stopping_warmup is None:
            early_stopping_warmup = 0 if rule is None else STUDY_SETTINGS[rule][1]
        self.early_stopping_warmup = check_int("early_stopping_warmup", early_stopping_warmup, 0)
        self.device = device
        self.verbose = bool(verbose)
        self._rows = []
        self.stopped_at_ = None
        self.early_stopping_checkpoint_ = None

    def _study_rule(self):
        """The study's rule for this monitor: DEFAULT_RULE with held-out images, else the
        runner-up that needs none."""
        return DEFAULT_RULE if self._heldout_array is not None else FALLBACK_RULE

    @property
    def memorizes(self):
        """Whether evaluations include the memorization ratio."""
        return self.sampler is not None or self.n_samples > 0

    # ------------------------------------------------------------------ measuring

    def evaluate(self, model):
        """Measure a model without recording it.

        Parameters
        ----------
        model : torch.nn.Module or skicr.extraction.Backbone
            The network (for instance the EMA network of a training run); it
            is read, never modified, and its train/eval mode is restored.

        Returns
        -------
        row : dict
            ``icr``, ``mean_snr``, ``trace_s``, ``trace_xi``, ``trace_h``,
            ``invariant_share``, ``n_images``, ``n_views``, ``n_features``,
            with memorization ``memorization_ratio`` and ``nn_distance``,
            and ``seconds``.
        """
        from sklearn.base import clone

        start = time.perf_counter()
        extractor = clone(self.extractor).set_params(backbone=self._backbone(model))
        if self.device is not None:
            extractor.set_params(device=self.device)
        row = self._measure(extractor, self._image_array)
        if self._heldout_array is not None:
            held = self._measure(extractor, self._heldout_array)
            row.update({"heldout_icr": held["icr"], "heldout_trace_s": held["trace_s"],
                        "heldout_trace_xi": held["trace_xi"]})
        if self.memorizes:
            samples = self.generate(model)
            distances, _ = nearest_training_neighbors(samples, self._training_array)
            ratios = _distance_ratios(distances)
            row["memorization_ratio"] = float(np.mean(ratios < self.memorization_threshold))
            row["nn_distance"] = float(np.mean(distances[:, 0]))
        row["seconds"] = time.perf_counter() - start
        return row

    def _measure(self, extractor, images):
        """ICR, SNR and traces of ``images``' views (fixed views: the extractor's seed)."""
        extractor.fit(images[:1])
        views = extractor.transform_views(images)
        if not np.all(np.isfinite(views)):
            raise FloatingPointError(
                "the model produced NaN or infinite features; its weights have diverged."
            )
        settings = self.decomposer.get_params(deep=False)
        result = decompose(
            accumulate(views),
            tau=settings["tau"],
            tau_mode=settings["tau_mode"],
            covariance_estimator=settings["covariance_estimator"],
            bias_correction=settings["bias_correction"],
            views=views,
            spectrum=False,  # the trace identity: ICR without an eigendecomposition
        )
        row = {
            "icr": float(result.icr),
            "mean_snr": float(result.mean_snr),
            "trace_s": result.trace_s,
            "trace_xi": result.trace_xi,
            "trace_h": result.expansion,
            "invariant_share": result.invariant_share,
            "n_images": int(views.shape[0]),
            "n_views": int(views.shape[1]),
            "n_features": int(views.shape[2]),
        }
        return row

    def _backbone(self, model):
        """A raw diffusers UNet2DModel with the monitor's scheduler gets its adapter here."""
        if self.scheduler is not None and _is_diffusers_unet(model):
            from ..extraction import UNet2DBackbone

            return UNet2DBackbone(model, scheduler=self.scheduler)
        return model

    def generate(self, model):
        """The samples of one evaluation, fixed seed.

        ``sampler(model)`` when a sampler was given; else, for a diffusers
        ``UNet2DModel`` (or its :class:`~skicr.extraction.UNet2DBackbone`),
        DDIM through :class:`SchedulerSampler` built from the monitor's
        ``scheduler`` config; else EDM's Heun sampler.

        Parameters
        ----------
        model : torch.nn.Module or skicr Backbone
            Raw EDM network ``F`` (or an ``EDMPrecond``), or a diffusers
            ``UNet2DModel``, for the default samplers.

        Returns
        -------
        samples : ndarray of shape (n_samples, C, H, W)
            Images in [0, 1].
        """
        if self.sampler is not None:
            samples = unit_images(self.sampler(model), "sampler output")
        elif _is_diffusers_unet(model):
            samples = self._scheduler_sampler()(model)
        else:
            from ..models import edm_sampler

            samples = edm_sampler(
                model,
                self.n_samples,
                n_steps=self.sampler_steps,
                image_shape=self._training_array.shape[1:],
                seed=self.sampler_seed,
                progress=False,
                device=self.device,
            )
        if samples.shape[1:] != self._training_array.shape[1:]:
            raise ValueError(
                f"samples of shape {samples.shape[1:]} cannot be compared with training "
                f"images of shape {self._training_array.shape[1:]}."
            )
        return samples

    def _scheduler_sampler(self):
        from diffusers import DDIMScheduler, DDPMScheduler

        from ._diffusers import SchedulerSampler

        scheduler = DDPMScheduler() if self.scheduler is None else self.scheduler
        if isinstance(scheduler, DDPMScheduler):  # a few DDIM steps instead of 1000 DDPM ones
            scheduler = DDIMScheduler.from_config(scheduler.config)
        return SchedulerSampler(scheduler, self.n_samples, self._training_array.shape[1:],
                                n_steps=self.sampler_steps, seed=self.sampler_seed,
                                device=self.device)

    def __call__(self, step, model):
        """Evaluate ``model`` at training step ``step`` and append a row to the history.

        Parameters
        ----------
        step : int
            Training step (or epoch) of the model; rows are kept in call order.
        model : torch.nn.Module or skicr.extraction.Backbone
            The network to measure.

        Returns
        -------
        stop : bool
            True once the early-stopping rule has fired (so
            :func:`~skicr.models.train_denoiser` stops); else False.
        """
        row = {"step": int(step), **self.evaluate(model)}
        self._rows.append(row)
        if self.verbose:
            from tqdm.auto import tqdm

            text = (f"step {row['step']:>6d}: ICR {row['icr']:.4f}, tr(Sigma_s) "
                    f"{row['trace_s']:.4g}, tr(Sigma_xi) {row['trace_xi']:.4g}")
            if "memorization_ratio" in row:
                text += f", memorization ratio {row['memorization_ratio']:.3f}"
            tqdm.write(text)
        if self.early_stopping_rule is not None and self.stopped_at_ is None:
            alarm = run_detector(self.early_stopping_rule, self.to_frame(),
                                 warmup_step=self.early_stopping_warmup,
                                 **self.early_stopping_params)
            if alarm.fired:
                self.stopped_at_ = row["step"]
                self.early_stopping_checkpoint_ = alarm.checkpoint
        return self.stopped_at_ is not None and self.early_stopping_rule is not None

    def from_checkpoints(self, paths, model=None, steps=None):
        """Evaluate saved weights, one row per checkpoint, in order of step.

        Parameters
        ----------
        paths : str, Path or iterable of them
            Checkpoint files, a folder (its ``*.pt`` files) or a glob pattern.
            Files are read with ``torch.load(weights_only=True)``: no code
            runs. Files skicr wrote carry a content hash, checked before any
            evaluation: a corrupted or edited file is an error naming it.
        model : torch.nn.Module or None, default=None
            None: each file is a skicr weights file
            (:func:`skicr.models.save_denoiser`). Otherwise the architecture
            to load each state dict into (in place): the file is a state dict
            or holds one under ``ema``, ``state_dict``, ``model``, ``net`` or
            ``ema_net``.
        steps : sequence of int or None, default=None
            The step of each file; None reads ``step`` from the file's
            metadata, else the last number in its name, else its position.

        Returns
        -------
        self : ICRMonitor
            The monitor, with one new row per checkpoint.
        """
        import glob

        import torch

        if isinstance(paths, (str, Path)):
            path = Path(paths)
            if path.is_dir():
                files = sorted(path.glob("*.pt")) + sorted(path.glob("*.pth"))
            elif path.is_file():
                files = [path]
            else:
                files = [Path(p) for p in sorted(glob.glob(str(paths)))]
        else:
            files = [Path(p) for p in paths]
        if not files:
            raise ValueError(f"no checkpoint files found in {paths!r}.")
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"checkpoint files not found: {missing[:5]}.")
        if steps is not None:
            steps = [int(s) for s in steps]
            if len(steps) != len(files):
                raise ValueError(f"got {len(steps)} steps for {len(files)} checkpoint files.")
        if model is not None and not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module or None; got {type(model).__name__}.")

        from ..models import load_denoiser

        loaded = []
        for position, path in enumerate(files):
            payload = read_torch_file(path, "checkpoint")
            if isinstance(payload, dict) and CONTENT_HASH_KEY in payload:
                # a file skicr wrote: refuse a corrupted one before any evaluation
                payload = verify_seal(payload, path, "checkpoint")
            step = steps[position] if steps is not None else _checkpoint_step(path, payload, position)
            loaded.append((step, path, payload))
        loaded.sort(key=lambda item: item[0])
        for step, path, payload in loaded:
            if model is None:
                net = load_denoiser(path, device=self.device)
            else:
                model.load_state_dict(_state_dict_of(payload, path))
                net = model
            self(step, net)
            self._rows[-1]["checkpoint"] = str(path)
        return self

    # ------------------------------------------------------------------ results

    @property
    def history_(self):
        """The evaluations so far as a pandas DataFrame (see the class docstring)."""
        return self.to_frame()

    def to_frame(self):
        """The evaluations so far as a pandas DataFrame, one row per evaluation.

        Returns
        -------
        frame : pandas.DataFrame
            One row per evaluation, in call order; the columns of :attr:`history_`.
        """
        import pandas as pd

        columns = list(_COLUMNS)
        if self._heldout_array is not None:
            columns += ["heldout_icr", "heldout_trace_s", "heldout_trace_xi"]
        if self.memorizes:
            columns += ["memorization_ratio", "nn_distance"]
        columns.append("seconds")
        if any("checkpoint" in row for row in self._rows):
            columns.append("checkpoint")
        return pd.DataFrame(self._rows, columns=columns)

    def turning_point(self, column="icr", start_step=0, **kwargs):
        """The early-stopping signal: minimum of the trajectory and whether it has turned up.

        Parameters
        ----------
        column : str, default="icr"
            Column of :attr:`history_` to test (lower is better).
        start_step : int, default=0
            Only evaluations at this step or later are tested.
        **kwargs
            Passed to :func:`detect_turning_point` (``window``, ``min_rise``,
            ``alpha``, ``n_bootstrap``, ``random_state``), over
            ``turning_point_params``.

        Returns
        -------
        result : TurningPoint
            The minimum's step, whether ICR has significantly turned up
            (``found``), the confidence and the smoothed trajectory.
        """
        frame = self.to_frame().sort_values("step")
        if column not in frame:
            raise ValueError(f"unknown column {column!r}; the history has {list(frame.columns)}.")
        frame = frame[frame["step"] >= start_step]
        if len(frame) < 3:
            raise ValueError(
                f"a turning point needs at least 3 evaluations from step {start_step} on; "
                f"the monitor has {len(frame)}."
            )
        params = {**self.turning_point_params, **kwargs}
        return detect_turning_point(frame["step"].to_numpy(), frame[column].to_numpy(), **params)

    def verdict(self, rule=None, warmup_step=None, **params):
        """The early-stopping verdict on the evaluations so far, in numbers and one sentence.

        Parameters
        ----------
        rule : str or None, default=None
            A detector name; None: the monitor's early-stopping rule (the
            study's rule when early stopping is off).
        warmup_step : int or None, default=None
            None: the monitor's warm-up for its own rule, else the study's.
        **params
            Parameters of the rule; none: the monitor's for its own rule, else
            the study's (``STUDY_SETTINGS``).

        Returns
        -------
        verdict : StoppingVerdict
            When the rule fired, the checkpoint to keep, the confidence, and
            ``sentence()``.
        """
        if rule is None:
            rule = self.early_stopping_rule or self._study_rule()
        if rule not in DETECTORS:
            raise ValueError(f"unknown rule {rule!r}; choose one of {sorted(DETECTORS)}.")
        own = rule == self.early_stopping_rule
        if not params:
            params = self.early_stopping_params if own else STUDY_SETTINGS[rule][0]
        if warmup_step is None:
            warmup_step = self.early_stopping_warmup if own else STUDY_SETTINGS[rule][1]
        return stopping_verdict(self.to_frame(), rule, warmup_step=warmup_step,
                                **_check_rule_params(rule, params))

    def memorization_onset(self, level=0.05):
        """First evaluated step whose memorization ratio reaches ``level``.

        Parameters
        ----------
        level : float, default=0.05
            Fraction of memorized samples that marks the onset.

        Returns
        -------
        step : int or None
            None if the ratio never reached ``level`` (or is not measured).
        """
        frame = self.to_frame().sort_values("step")
        if "memorization_ratio" not in frame:
            return None
        reached = frame["step"][frame["memorization_ratio"] >= level]
        return None if reached.empty else int(reached.iloc[0])

    def plot(self, axes=None, title=None, start_step=0):
        """ICR (with its smoothed curve and minimum), memorization ratio, and the two traces.

        Parameters
        ----------
        axes : sequence of two matplotlib Axes or None, default=None
            Where to draw; a new figure with two panels when None.
        title : str or None, default=None
            Title of the first panel.
        start_step : int, default=0
            First step of the turning-point test drawn (see :meth:`turning_point`).

        Returns
        -------
        axes : ndarray of two matplotlib Axes
            The top (ICR, memorization ratio) and bottom (traces) panels.
        """
        from ._plot import plot_training_trajectory

        frame = self.to_frame().sort_values("step")
        tested = int((frame["step"] >= start_step).sum())
        turning = self.turning_point(start_step=start_step) if tested >= 3 else None
        return plot_training_trajectory(frame, turning_point=turning, axes=axes, title=title,
                                        start_step=start_step)

    def __repr__(self):
        ex = self.extractor
        memo = f", n_samples={self.n_samples}" if self.memorizes else ""
        return (f"ICRMonitor(n_images={self._image_array.shape[0]}, layer={ex.layer!r}, "
                f"sigma={ex.sigma}, n_views={ex.n_views}, pooling={ex.pooling!r}{memo}, "
                f"evaluations={len(self._rows)})")
