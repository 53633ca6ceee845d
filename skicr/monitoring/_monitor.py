"""ICRMonitor: ICR of a model across training, at fixed noise level and fixed views."""

import re
import time
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from ..metrics import accumulate, decompose
from ._memorization import nearest_training_neighbors
from ._turning_point import detect_turning_point

__all__ = ["ICRMonitor"]

_TURNING_POINT_KEYS = {"window", "min_rise", "alpha", "n_bootstrap", "random_state"}

# the columns every row has, in order (memorization columns follow when enabled)
_COLUMNS = [
    "step", "icr", "mean_snr", "trace_s", "trace_xi", "trace_h", "invariant_share",
    "n_images", "n_views", "n_features",
]


def _as_unit_images(images, name):
    """Images as float32 in [0, 1] (uint8 / 255), checked: the sampler's output range."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 in [0, 255] or float in [0, 1]; got dtype {arr.dtype}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contain NaN or infinite values.")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(
            f"float {name} must lie in [0, 1]; got values in [{arr.min():.3g}, {arr.max():.3g}]."
        )
    return arr.astype(np.float32, copy=False)


def _check_int(name, value, minimum):
    if not isinstance(value, Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
    return int(value)


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
        ``random_state`` must be an int. None builds one from the parameters
        below.
    layer : str or None, default=None
        Layer read (None: the model's default, ``mid`` for skicr's
        denoiser). Ignored when ``extractor`` is given.
    sigma : float, default=0.2
        Noise level of the views. Ignored when ``extractor`` is given.
    n_views : int, default=4
        Views per image. Ignored when ``extractor`` is given.
    augment : "default", None or callable, default="default"
        Augmentation of the views (see :class:`~skicr.FeatureExtractor`).
        Ignored when ``extractor`` is given.
    pooling : {"auto", "mean", "flatten"} or callable, default="auto"
        Pooling of the layer's output. Ignored when ``extractor`` is given.
    batch_size : int, default=256
        Images per forward pass. Ignored when ``extractor`` is given.
    tau : float, default=1e-3
        Ridge on Sigma_xi (see :func:`skicr.metrics.icr_score`).
    tau_mode : {"relative", "absolute"}, default="relative"
        How ``tau`` is read.
    bias_correction : bool, default=False
        Use the bias-corrected Sigma_s.
    covariance_estimator : sklearn covariance estimator or None, default=None
        Shrinkage of both covariances.
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
    memorization_threshold : float, default=1/3
        A sample is memorized when ``d1 / d2`` is below it (see
        :func:`memorization_ratio`).
    sampler : callable or None, default=None
        ``sampler(model) -> images`` in [0, 1] of shape (n, C, H, W), to
        replace EDM's sampler for other kinds of models (then
        ``n_samples``, ``sampler_steps`` and ``sampler_seed`` are not used,
        and the memorization ratio is computed at every evaluation).
    early_stopping : bool, default=False
        When True, a call returns True (which stops
        :func:`~skicr.models.train_denoiser`) once :meth:`turning_point`
        finds a significant rise of ICR after its minimum, among the
        evaluations from step ``early_stopping_warmup`` on (at least 5).
    early_stopping_warmup : int, default=0
        Evaluations before this step are recorded but not tested: ICR of a
        freshly initialised network can move up and down in the first
        hundreds of steps (see ``docs/monitoring.md``).
    turning_point_params : dict or None, default=None
        Keyword arguments of :func:`detect_turning_point` (``alpha``,
        ``min_rise``, ``window``...) used by :meth:`turning_point` and early
        stopping.
    random_state : int, default=0
        Seed of the views (the same at every evaluation). Ignored when
        ``extractor`` is given.
    device : str, torch.device or None, default=None
        Where the extraction runs; None: the model's device.
    verbose : bool, default=False
        Print one line per evaluation (through tqdm, so progress bars stay
        intact).

    Attributes
    ----------
    history_ : pandas.DataFrame
        One row per evaluation: ``step``, ``icr``, ``mean_snr`` (mean
        invariant SNR), ``trace_s``, ``trace_xi``, ``trace_h``
        (``trace_s + trace_xi``), ``invariant_share`` (``trace_s /
        trace_h``), ``n_images``, ``n_views``, ``n_features``, and with
        memorization ``memorization_ratio`` and ``nn_distance`` (mean
        distance of a sample to its nearest training image, pixels in [0, 1]),
        then ``seconds`` (time of the evaluation) and, for checkpoints,
        ``checkpoint``.
    stopped_at_ : int or None
        Step at which early stopping fired.

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
        *,
        layer=None,
        sigma=0.2,
        n_views=4,
        augment="default",
        pooling="auto",
        batch_size=256,
        tau=1e-3,
        tau_mode="relative",
        bias_correction=False,
        covariance_estimator=None,
        n_samples=0,
        sampler_steps=18,
        sampler_seed=0,
        training_images=None,
        memorization_threshold=1 / 3,
        sampler=None,
        early_stopping=False,
        early_stopping_warmup=0,
        turning_point_params=None,
        random_state=0,
        device=None,
        verbose=False,
    ):
        from ..extraction import FeatureExtractor

        if extractor is None:
            extractor = FeatureExtractor(
                backbone=None,
                layer=layer,
                sigma=sigma,
                n_views=n_views,
                augment=augment,
                pooling=pooling,
                batch_size=batch_size,
                device=device,
                random_state=random_state,
            )
        elif not isinstance(extractor, FeatureExtractor):
            raise TypeError(
                f"extractor must be a skicr.FeatureExtractor or None; got {type(extractor).__name__}."
            )
        # check the extraction settings now (with a stand-in network), not at the first call
        import torch
        from sklearn.base import clone

        clone(extractor).set_params(backbone=torch.nn.Identity())._validate_params()
        seed = extractor.random_state
        if not isinstance(seed, Integral) or isinstance(seed, bool):
            raise ValueError(
                "the monitor needs an int random_state (on the extractor) so that every "
                f"evaluation measures the same views; got {seed!r}."
            )
        if extractor.n_views < 2:
            raise ValueError(f"ICR needs at least 2 views per image; got n_views={extractor.n_views}.")
        if not isinstance(extractor.sigma, Real) or not extractor.sigma > 0:
            raise ValueError(f"sigma must be a number > 0; got {extractor.sigma!r}.")
        self.images = images
        self._image_array = _as_unit_images(images, "images")
        if self._image_array.ndim != 4 or self._image_array.shape[0] < 2:
            raise ValueError(
                f"images must have shape (n_images, C, H, W) with at least 2 images; "
                f"got {self._image_array.shape}."
            )
        self.extractor = extractor
        if not isinstance(tau, Real) or tau < 0:
            raise ValueError(f"tau must be a number >= 0; got {tau!r}.")
        if tau_mode not in ("relative", "absolute"):
            raise ValueError(f"tau_mode must be 'relative' or 'absolute'; got {tau_mode!r}.")
        self.tau, self.tau_mode = tau, tau_mode
        self.bias_correction = bool(bias_correction)
        self.covariance_estimator = covariance_estimator

        self.n_samples = _check_int("n_samples", n_samples, 0)
        self.sampler_steps = _check_int("sampler_steps", sampler_steps, 2)
        self.sampler_seed = _check_int("sampler_seed", sampler_seed, 0)
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
            train = self._image_array if training_images is None else _as_unit_images(
                training_images, "training_images"
            )
            if train.ndim != 4 or train.shape[0] < 2:
                raise ValueError(
                    f"training_images must have shape (n, C, H, W) with n >= 2; got {train.shape}."
                )
            self._training_array = train

        self.early_stopping = bool(early_stopping)
        self.early_stopping_warmup = _check_int("early_stopping_warmup", early_stopping_warmup, 0)
        if turning_point_params is not None and not isinstance(turning_point_params, dict):
            raise TypeError(
                f"turning_point_params must be a dict or None; got {type(turning_point_params).__name__}."
            )
        self.turning_point_params = dict(turning_point_params or {})
        # an unknown key or a bad value fails now, not at the first test deep into training
        unknown = set(self.turning_point_params) - _TURNING_POINT_KEYS
        if unknown:
            raise ValueError(
                f"unknown turning_point_params {sorted(unknown)}; detect_turning_point takes "
                f"{sorted(_TURNING_POINT_KEYS)}."
            )
        window = self.turning_point_params.get("window")
        n_check = max(7, window if isinstance(window, Integral) else 0)
        # (a noiseless dummy: no bootstrap runs whatever n_bootstrap is)
        detect_turning_point(np.arange(n_check), np.arange(n_check, dtype=float),
                             **self.turning_point_params)
        self.device = device
        self.verbose = bool(verbose)
        self._rows = []
        self.stopped_at_ = None

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
        extractor = clone(self.extractor).set_params(backbone=model)
        if self.device is not None:
            extractor.set_params(device=self.device)
        extractor.fit(self._image_array[:1])
        views = extractor.transform_views(self._image_array)
        if not np.all(np.isfinite(views)):
            raise FloatingPointError(
                "the model produced NaN or infinite features; its weights have diverged."
            )
        result = decompose(
            accumulate(views),
            tau=self.tau,
            tau_mode=self.tau_mode,
            covariance_estimator=self.covariance_estimator,
            bias_correction=self.bias_correction,
            views=views,
            spectrum=False,  # the trace identity: ICR without an eigendecomposition
        )
        trace_s = float(np.trace(result.covariance_s))
        trace_xi = float(np.trace(result.covariance_xi))
        row = {
            "icr": float(result.icr),
            "mean_snr": float(result.mean_snr),
            "trace_s": trace_s,
            "trace_xi": trace_xi,
            "trace_h": trace_s + trace_xi,
            "invariant_share": trace_s / (trace_s + trace_xi) if trace_s + trace_xi > 0 else np.nan,
            "n_images": int(views.shape[0]),
            "n_views": int(views.shape[1]),
            "n_features": int(views.shape[2]),
        }
        if self.memorizes:
            samples = self.generate(model)
            distances, _ = nearest_training_neighbors(samples, self._training_array)
            d1, d2 = distances[:, 0], distances[:, 1]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios = np.where(d1 == 0, 0.0, d1 / d2)
            row["memorization_ratio"] = float(np.mean(ratios < self.memorization_threshold))
            row["nn_distance"] = float(np.mean(d1))
        row["seconds"] = time.perf_counter() - start
        return row

    def generate(self, model):
        """The samples of one evaluation: ``sampler(model)`` or EDM's Heun sampler, fixed seed.

        Parameters
        ----------
        model : torch.nn.Module
            Raw EDM network ``F`` (or an ``EDMPrecond``) for the default
            sampler.

        Returns
        -------
        samples : ndarray of shape (n_samples, C, H, W)
            Images in [0, 1].
        """
        if self.sampler is not None:
            samples = _as_unit_images(self.sampler(model), "sampler output")
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
            True when ``early_stopping`` is on and ICR has significantly
            turned up (so :func:`~skicr.models.train_denoiser` stops); else
            False.
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
        if self.early_stopping and self.stopped_at_ is None:
            tested = sum(r["step"] >= self.early_stopping_warmup for r in self._rows)
            if tested >= 5 and self.turning_point(start_step=self.early_stopping_warmup).found:
                self.stopped_at_ = row["step"]
        return self.stopped_at_ is not None and self.early_stopping

    def from_checkpoints(self, paths, model=None, steps=None):
        """Evaluate saved weights, one row per checkpoint, in order of step.

        Parameters
        ----------
        paths : str, Path or iterable of them
            Checkpoint files, a folder (its ``*.pt`` files) or a glob pattern.
            Files are read with ``torch.load(weights_only=True)``: no code
            runs.
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
            try:
                payload = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # pickle errors, truncated or non-torch files
                raise ValueError(f"could not read checkpoint {str(path)!r}: {exc}") from exc
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
