"""The view pipeline: images -> augmented, noised views -> hooked layers -> pooled features.

:class:`ViewSpec` holds every setting of a run (what the extractor's
parameters resolve to); :func:`iter_view_chunks` runs it one chunk of images
at a time, built from small steps: per-image seeds (:func:`image_seed`),
views (:func:`_views_of_chunk`), noise (:func:`_noise_of_chunk`), the layer
hooks (:class:`_LayerCapture`) and pooling (:func:`_pool`).
:class:`~skicr.extraction.FeatureExtractor` and :mod:`skicr.streaming` both
drive it.
"""

import dataclasses
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from tqdm.auto import tqdm

from .._utils.threads import network_threads, torch_threads
from ._augment import ViewAugmentation, resolve_augment

__all__ = ["ViewSpec", "iter_view_chunks", "extract_views", "image_seed"]

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_AUGMENT_STREAM, _NOISE_STREAM, _CALLABLE_STREAM = 0, 1, 2


def _splitmix64(value):
    value = (value + _GOLDEN) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def image_seed(base_seed, index, stream):
    """Seed of one image's stream (0: augmentation, 1: noise, 2: batch callables).

    Depends only on (base seed, image index, stream): the views of an image do
    not depend on the batch size, on the other images or on the device.

    Parameters
    ----------
    base_seed : int
        The run's seed.
    index : int
        The image's global number.
    stream : int
        0 augmentation, 1 noise, 2 a plain augmentation callable's batch.

    Returns
    -------
    seed : int
        A 64-bit seed.
    """
    return _splitmix64(_splitmix64(base_seed) ^ _splitmix64(3 * index + stream))


@dataclasses.dataclass(frozen=True)
class ViewSpec:
    """How the views of a run are made and read (what an extractor's parameters resolve to).

    Attributes
    ----------
    sigma : float
        VE noise std relative to images in [-1, 1].
    n_views : int
        Views per image.
    augment : "default", None, ViewAugmentation or callable
        The augmentation before the noise (as the extractor's ``augment``).
    pooling : {"auto", "mean", "flatten"} or callable
        How a layer's output becomes one vector per view.
    batch_size : int
        Images per forward pass.
    device : torch.device
        Where the network runs.
    base_seed : int
        Seed of every image's augmentation and noise streams.
    early_exit : bool, default=True
        Stop the forward pass once every hooked layer has run.
    precision : {"float32", "bfloat16"}, default="float32"
        ``"bfloat16"``: run under :func:`torch.autocast`.
    progress : bool, default=False
        A progress bar over chunks.
    """

    sigma: float
    n_views: int
    augment: object
    pooling: object
    batch_size: int
    device: torch.device
    base_seed: int
    early_exit: bool = True
    precision: str = "float32"
    progress: bool = False

    def replace(self, **changes):
        """A copy with some settings changed.

        Parameters
        ----------
        **changes
            New values of attributes.

        Returns
        -------
        spec : ViewSpec
        """
        return dataclasses.replace(self, **changes)


class _LayerReached(Exception):
    """Raised by the hook to stop the forward pass once the layers have run."""


def _first_tensor(output):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(
        f"The hooked layer returned {type(output).__name__}, which holds no tensor; "
        "pick another layer."
    )


@contextmanager
def _frozen(modules):
    """Evaluation mode for the run; the previous train/eval flags are restored."""
    flags = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


class _LayerCapture:
    """Forward hooks on ``layers`` that keep each one's first output (context manager)."""

    def __init__(self, backbone, layers, early_exit):
        self.backbone = backbone
        self.layers = tuple(layers)
        self.early_exit = early_exit
        self.captured = {}
        self._targets = {name: backbone.get_layer(name) for name in self.layers}
        self._handles = []

    def _hook(self, name):
        def hook(module, args, output):
            if name not in self.captured:  # a module run twice: keep its first output
                self.captured[name] = _first_tensor(output)
            if self.early_exit and len(self.captured) == len(self.layers):
                raise _LayerReached
        return hook

    def __enter__(self):
        self._handles = [target.register_forward_hook(self._hook(name))
                         for name, target in self._targets.items()]
        return self

    def __exit__(self, *exc_info):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def run(self, noisy, sigma):
        """Forward ``noisy`` at ``sigma``; the outputs of every layer, by name."""
        self.captured.clear()
        try:
            self.backbone.forward(noisy, float(sigma))
        except _LayerReached:
            pass
        missing = [name for name in self.layers if name not in self.captured]
        if missing:
            raise RuntimeError(
                f"Layer(s) {missing} did not run during the forward pass of "
                f"{type(self.backbone.module).__name__}; pick layers on the forward path."
            )
        captured, self.captured = self.captured, {}
        return captured


def _finite(features, layer, backbone, spec):
    """The layer's output, refused when the network produced NaN or infinite values."""
    if not bool(torch.isfinite(features).all()):
        raise ValueError(
            f"{type(backbone.module).__name__} produced NaN or infinite features at layer "
            f"{layer!r} with sigma={spec.sigma:g}: the network overflowed on these views "
            "(an unscaled network sees inputs of std about sigma; try a smaller sigma or an "
            "adapter that scales the input, such as EDMBackbone)."
        )
    return features


def _pool(features, pooling, n_rows):
    if callable(pooling):
        pooled = pooling(features)
        pooled = torch.as_tensor(pooled)
        if pooled.ndim != 2 or pooled.shape[0] != n_rows:
            raise ValueError(
                f"pooling callable must return shape (n, d) with n={n_rows}; got "
                f"{tuple(pooled.shape)} from features of shape {tuple(features.shape)}."
            )
        if not torch.isfinite(pooled).all():
            raise ValueError(
                f"pooling callable {getattr(pooling, '__name__', type(pooling).__name__)} returned "
                "NaN or infinite values (from finite features); features must be finite."
            )
        return pooled
    if features.ndim == 2:
        return features
    if pooling == "flatten":
        return features.flatten(1)
    if features.ndim == 4:  # (n, C, h, w) feature map: spatial mean
        return features.mean(dim=(2, 3))
    if features.ndim == 3:  # (n, tokens, width): token mean
        return features.mean(dim=1)
    raise ValueError(
        f"pooling={pooling!r} does not know features of shape {tuple(features.shape)}; "
        "use pooling='flatten' or a callable."
    )


def _views_of_chunk(backbone, images, augmentation, spec, chunk_indices, generator):
    """The prepared (VAE-encoded if any) views of a chunk: (n_images * n_views, C, H, W)."""
    n_views = spec.n_views
    if augmentation is None:
        # views differ by noise only: prepare (VAE) each image once
        return backbone.prepare(images * 2 - 1).repeat_interleave(n_views, dim=0).float()
    views = images.repeat_interleave(n_views, dim=0)
    if isinstance(augmentation, ViewAugmentation):
        parameters = torch.cat([
            augmentation.sample_parameters(
                n_views, generator.manual_seed(image_seed(spec.base_seed, i, _AUGMENT_STREAM))
            )
            for i in chunk_indices
        ])
        views = augmentation.apply(views, parameters.to(images.device))
    else:
        generator.manual_seed(image_seed(spec.base_seed, chunk_indices[0], _CALLABLE_STREAM))
        n_rows = len(chunk_indices) * n_views
        views = augmentation(views, generator)
        if (not isinstance(views, torch.Tensor) or views.ndim != 4
                or views.shape[:2] != (n_rows, images.shape[1])):
            raise ValueError(
                "augment must return a tensor of shape (n, C, H', W') with "
                f"n={n_rows}, C={images.shape[1]}; got "
                f"{getattr(views, 'shape', type(views).__name__)}."
            )
        if not torch.isfinite(views).all():
            raise ValueError(
                f"augment callable {getattr(augmentation, '__name__', type(augmentation).__name__)} "
                "returned NaN or infinite pixels; augmented views must be finite."
            )
    return backbone.prepare(views.float() * 2 - 1).float()


def _noise_of_chunk(data, spec, chunk_indices, generator):
    """Each image's own noise for its views, drawn on the CPU: shape of ``data``."""
    return torch.cat([
        torch.randn(
            (spec.n_views, *data.shape[1:]),
            generator=generator.manual_seed(image_seed(spec.base_seed, i, _NOISE_STREAM)),
        )
        for i in chunk_indices
    ]).to(spec.device)


def _chunk_starts(n_images, spec, layers):
    description = ", ".join(layers) if len(layers) <= 3 else f"{len(layers)} layers"
    return tqdm(
        range(0, n_images, spec.batch_size),
        total=-(-n_images // spec.batch_size),
        disable=not spec.progress,
        desc=f"extracting {description} at sigma={spec.sigma:g}",
        unit="batch",
    )


def iter_view_chunks(backbone, batches, layers, spec, *, indices=None, stop=None):
    """Pooled features of the views of every image, one chunk of ``spec.batch_size`` images at a time.

    One forward pass per chunk covers all its views and reads every layer in
    ``layers`` (hooks on each; with ``spec.early_exit`` the pass stops once
    all of them have run). ``indices`` are the images' global numbers, which
    seed their augmentation and noise streams (default ``0..n-1``): an image
    gets the same views wherever it sits in a stream or on whichever process.

    Parameters
    ----------
    backbone : Backbone
        The adapter.
    batches : ImageBatches
        Checked images.
    layers : sequence of str
        Layers to read.
    spec : ViewSpec
        The run's settings.
    indices : array-like of int or None, default=None
        Global numbers of the images.
    stop : int or None, default=None
        Read only the first ``stop`` images.

    Yields
    ------
    start, stop : int
        Positions of the chunk in ``batches``.
    features : dict
        Layer name -> float32 ndarray of shape (stop - start, n_views, d_layer).
    """
    n_images = batches.n_images if stop is None else min(stop, batches.n_images)
    if indices is None:
        indices = np.arange(n_images)
    elif len(indices) < n_images:
        raise ValueError(f"got {len(indices)} image indices for {n_images} images.")
    layers = tuple(layers)
    augmentation = resolve_augment(spec.augment)
    autocast = (
        torch.autocast(device_type=spec.device.type, dtype=torch.bfloat16)
        if spec.precision == "bfloat16"
        else nullcontext()
    )
    generator = torch.Generator()  # CPU: identical draws on every device
    # small networks on the CPU: one torch thread (skicr._utils.threads)
    threads = network_threads(backbone.module) if spec.device.type == "cpu" else None
    with _LayerCapture(backbone, layers, spec.early_exit) as capture, \
            _frozen(backbone.modules_()), torch.inference_mode(), autocast, torch_threads(threads):
        for start in _chunk_starts(n_images, spec, layers):
            stop_ = min(start + spec.batch_size, n_images)
            chunk_indices = [int(i) for i in indices[start:stop_]]
            images = batches.batch(start, stop_, spec.device)
            data = _views_of_chunk(backbone, images, augmentation, spec, chunk_indices, generator)
            noisy = data + float(spec.sigma) * _noise_of_chunk(data, spec, chunk_indices, generator)
            outputs = capture.run(noisy, spec.sigma)
            n_rows = (stop_ - start) * spec.n_views
            # pool in float32 (bfloat16 sums over many positions lose digits)
            yield start, stop_, {
                name: _pool(_finite(outputs[name], name, backbone, spec).float(), spec.pooling,
                            n_rows).float().reshape(stop_ - start, spec.n_views, -1).cpu().numpy()
                for name in layers
            }


def extract_views(backbone, batches, layers, spec, *, stop=None):
    """Features of every view of every image, for each layer.

    Parameters
    ----------
    backbone : Backbone
        The adapter.
    batches : ImageBatches
        Checked images.
    layers : sequence of str
        Layers to read.
    spec : ViewSpec
        The run's settings.
    stop : int or None, default=None
        Read only the first ``stop`` images.

    Returns
    -------
    views : dict of str to ndarray of shape (n_images, n_views, d_layer)
        float32 features.
    """
    n_images = batches.n_images if stop is None else min(stop, batches.n_images)
    out = {}
    for start, stop_, features in iter_view_chunks(backbone, batches, layers, spec, stop=stop):
        for name, pooled in features.items():
            if name not in out:
                out[name] = np.empty((n_images, *pooled.shape[1:]), dtype=np.float32)
            out[name][start:stop_] = pooled
    return out
