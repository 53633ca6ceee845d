"""FeatureExtractor: grouped view features of a frozen denoiser at one noise level."""

import copy
import os
from contextlib import contextmanager, nullcontext
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn
from tqdm.auto import tqdm

from .._views import ViewArray, view_feature_names
from ._archive import ModuleArchive
from ._augment import ViewAugmentation, resolve_augment
from ._backbones import Backbone, as_backbone
from ._images import check_images

__all__ = ["FeatureExtractor"]

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix64(value):
    value = (value + _GOLDEN) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _image_seed(base_seed, index, stream):
    """Seed of one image's stream (0: augmentation, 1: noise, 2: batch callables).

    Depends only on (base seed, image index, stream): the views of an image do
    not depend on the batch size, on the other images or on the device.
    """
    return _splitmix64(_splitmix64(base_seed) ^ _splitmix64(3 * index + stream))


class _LayerReached(Exception):
    """Raised by the hook to stop the forward pass once the layer has run."""


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


def _pool(features, pooling, n_rows):
    if callable(pooling):
        pooled = pooling(features)
        pooled = torch.as_tensor(pooled)
        if pooled.ndim != 2 or pooled.shape[0] != n_rows:
            raise ValueError(
                f"pooling callable must return shape (n, d) with n={n_rows}; got "
                f"{tuple(pooled.shape)} from features of shape {tuple(features.shape)}."
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


def _iter_view_chunks(
    backbone,
    batches,
    *,
    layers,
    sigma,
    n_views,
    augment,
    pooling,
    batch_size,
    device,
    base_seed,
    early_exit,
    precision,
    indices=None,
    stop=None,
    progress=False,
):
    """Pooled features of ``n_views`` views of every image, one chunk at a time.

    One forward pass per chunk of ``batch_size`` images covers all their views
    and reads every layer in ``layers`` (hooks on each; with ``early_exit`` the
    pass stops once all of them have run). ``indices`` are the images' global
    numbers, which seed their augmentation and noise streams (default
    ``0..n-1``): an image gets the same views wherever it sits in a stream or
    on whichever process.

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
    augmentation = resolve_augment(augment)
    targets = {name: backbone.get_layer(name) for name in layers}
    captured = {}

    def make_hook(name):
        def hook(module, args, output):
            if name not in captured:  # a module run twice: keep its first output
                captured[name] = _first_tensor(output)
            if early_exit and len(captured) == len(layers):
                raise _LayerReached
        return hook

    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if precision == "bfloat16"
        else nullcontext()
    )
    generator = torch.Generator()  # CPU: identical draws on every device
    n_batches = -(-n_images // batch_size)
    handles = [target.register_forward_hook(make_hook(name)) for name, target in targets.items()]
    description = ", ".join(layers) if len(layers) <= 3 else f"{len(layers)} layers"
    try:
        with _frozen(backbone.modules_()), torch.inference_mode(), autocast:
            for start in tqdm(
                range(0, n_images, batch_size),
                total=n_batches,
                disable=not progress,
                desc=f"extracting {description} at sigma={sigma:g}",
                unit="batch",
            ):
                stop_ = min(start + batch_size, n_images)
                chunk_indices = [int(i) for i in indices[start:stop_]]
                images = batches.batch(start, stop_, device)
                n_rows = (stop_ - start) * n_views

                if augmentation is None:
                    # views differ by noise only: prepare (VAE) each image once
                    data = backbone.prepare(images * 2 - 1)
                    data = data.repeat_interleave(n_views, dim=0)
                else:
                    views = images.repeat_interleave(n_views, dim=0)
                    if isinstance(augmentation, ViewAugmentation):
                        parameters = torch.cat([
                            augmentation.sample_parameters(
                                n_views, generator.manual_seed(_image_seed(base_seed, i, 0))
                            )
                            for i in chunk_indices
                        ])
                        views = augmentation.apply(views, parameters.to(device))
                    else:
                        generator.manual_seed(_image_seed(base_seed, chunk_indices[0], 2))
                        views = augmentation(views, generator)
                        if (not isinstance(views, torch.Tensor) or views.ndim != 4
                                or views.shape[:2] != (n_rows, images.shape[1])):
                            raise ValueError(
                                "augment must return a tensor of shape (n, C, H', W') with "
                                f"n={n_rows}, C={images.shape[1]}; got "
                                f"{getattr(views, 'shape', type(views).__name__)}."
                            )
                    data = backbone.prepare(views.float() * 2 - 1)

                data = data.float()
                noise = torch.cat([
                    torch.randn(
                        (n_views, *data.shape[1:]),
                        generator=generator.manual_seed(_image_seed(base_seed, i, 1)),
                    )
                    for i in chunk_indices
                ]).to(device)
                noisy = data + float(sigma) * noise

                captured.clear()
                try:
                    backbone.forward(noisy, float(sigma))
                except _LayerReached:
                    pass
                missing = [name for name in layers if name not in captured]
                if missing:
                    raise RuntimeError(
                        f"Layer(s) {missing} did not run during the forward pass of "
                        f"{type(backbone.module).__name__}; pick layers on the forward path."
                    )
                features = {}
                for name in layers:
                    # pool in float32 (bfloat16 sums over many positions lose digits)
                    pooled = _pool(captured.pop(name).float(), pooling, n_rows)
                    features[name] = pooled.float().reshape(stop_ - start, n_views, -1).cpu().numpy()
                yield start, stop_, features
    finally:
        for handle in handles:
            handle.remove()


def _extract_views(backbone, batches, *, layers, stop=None, **options):
    """Features of every view of every image: layer -> ndarray (n, n_views, d), float32."""
    n_images = batches.n_images if stop is None else min(stop, batches.n_images)
    out = {}
    for start, stop_, features in _iter_view_chunks(
        backbone, batches, layers=layers, stop=stop, **options
    ):
        for name, pooled in features.items():
            if name not in out:
                out[name] = np.empty((n_images, *pooled.shape[1:]), dtype=np.float32)
            out[name][start:stop_] = pooled
    return out


def _check_layer_names(layers):
    """The layer names as a list of distinct strings (no network needed).

    Bad types raise InvalidParameterError, which is both a TypeError and a
    ValueError, so estimator parameters and method arguments can share it.
    """
    if isinstance(layers, str):
        layers = [layers]
    try:
        layers = list(layers)
    except TypeError as exc:
        raise InvalidParameterError(f"layers must be a list of layer names; got {layers!r}.") from exc
    if not layers:
        raise ValueError("layers is empty: give at least one layer name.")
    bad = [name for name in layers if not isinstance(name, str)]
    if bad:
        raise InvalidParameterError(f"layer names must be strings; got {bad!r}.")
    repeated = sorted({name for name in layers if layers.count(name) > 1})
    if repeated:
        raise ValueError(f"layers contains repeated names: {repeated}.")
    return layers


def _check_layer_list(backbone, layers):
    """Validate layer names: non-empty, distinct, all in ``backbone`` (close-match errors)."""
    layers = _check_layer_names(layers)
    for name in layers:
        backbone.get_layer(name)  # unknown layer: error with close matches
    return layers


class _FittedModule:
    """Pickle marker: the ``backbone`` parameter is the fitted adapter's module."""


class FeatureExtractor(TransformerMixin, BaseEstimator):
    """Grouped view features of a frozen diffusion denoiser at noise level ``sigma``.

    Each image ``x0`` gives ``n_views`` views ``a_v(x0) + sigma * eps_v``:
    an independent augmentation ``a_v`` and independent Gaussian noise per
    view. The views run through the network up to ``layer`` (the forward
    pass stops there) and the layer's output is pooled to one vector per
    view. Rows are images, so labels stay aligned in a Pipeline; views are
    contiguous in the columns.

    Image convention: numpy arrays or torch tensors of shape
    ``(n, C, H, W)``, ``(n, H, W, C)`` or ``(n, H, W)``, either ``uint8`` in
    ``[0, 255]`` or floating point in ``[0, 1]``. They are mapped to
    ``[-1, 1]`` before noise is added, and ``sigma`` is the VE noise std
    relative to that range (EDM's convention; for latent models, relative to
    the scaled latents). Each backbone adapter maps ``sigma`` to the model's
    own parameterisation (VP timestep, flow time, EDM ``c_noise``).

    Parameters
    ----------
    backbone : torch.nn.Module, Backbone or path
        The frozen network. diffusers ``UNet2DModel`` and
        ``DiTTransformer2DModel`` instances are recognised, as are modules
        with ``noise_parameterization = "edm"`` (skicr's own denoiser); a
        local checkpoint directory is loaded with :func:`load_backbone`; any
        other network is wrapped in an adapter (:class:`EDMBackbone`,
        :class:`FlowBackbone`, :class:`CallableBackbone`...). It is shared,
        never copied, by :func:`sklearn.base.clone`.
    layer : str or None, default=None
        Name of the submodule to read (see :func:`list_layers`); None uses the
        adapter's default (``mid_block`` for a diffusers U-Net, the middle
        transformer block for DiT, ``mid`` for skicr's denoiser).
    sigma : float, default=0.2
        VE noise std relative to images in [-1, 1].
    n_views : int, default=4
        Views per image.
    augment : "default", None, ViewAugmentation or callable, default="default"
        ``"default"`` is :class:`RandomAffine` (scale 0.6-1, rotation +-15
        degrees, parameters drawn per view); None gives noise-only views;
        a callable ``(images, generator) -> images`` receives float images in
        [0, 1] of shape (n, C, H, W) on the device and a CPU generator; kornia
        augmentation modules are accepted and seeded from the generator.
    pooling : {"auto", "mean", "flatten"} or callable, default="auto"
        ``"auto"``/``"mean"``: spatial mean of (n, C, h, w) feature maps,
        token mean of (n, tokens, width) tokens; ``"flatten"``: keep every
        value (high dimension); a callable maps the layer's output tensor to
        (n, d).
    batch_size : int, default=32
        Images per forward pass (each brings its ``n_views`` views).
    device : str, torch.device or None, default=None
        Where to run; None uses the backbone's device. Otherwise the backbone
        is moved there (in place) by ``fit``.
    random_state : int, RandomState instance or None, default=None
        Seeds every augmentation parameter and noise draw. Image ``i`` gets
        its own streams derived from the seed and ``i``, drawn on the CPU: the
        same ``random_state`` gives the same views whatever the batch size or
        device (a plain augmentation callable is seeded per batch instead).
        Different ``sigma`` values with one ``random_state`` share the noise
        ``eps`` (common random numbers).
    progress : bool, default=False
        Show a tqdm progress bar over batches.
    early_exit : bool, default=True
        Stop the forward pass once ``layer`` has produced its output. False
        runs the whole network (same features, more compute).
    precision : {"float32", "bfloat16"}, default="float32"
        ``"bfloat16"`` runs under :func:`torch.autocast` with bfloat16 (meant
        for GPUs; features are returned as float32).

    Attributes
    ----------
    backbone_ : Backbone
        The adapter the features come from.
    layer_ : str
        The layer read.
    device_ : torch.device
        Where the backbone runs.
    n_features_out_ : int
        Features per view ``d``; ``transform`` returns ``n_views * d`` columns.

    See Also
    --------
    skicr.InvariantResidualDecomposer : Splits the views into invariant part and residual.
    list_layers : Layer names of a backbone.

    Examples
    --------
    >>> from diffusers import UNet2DModel
    >>> from skicr import FeatureExtractor
    >>> unet = UNet2DModel(sample_size=16, block_out_channels=(8, 16),
    ...                    down_block_types=("DownBlock2D", "DownBlock2D"),
    ...                    up_block_types=("UpBlock2D", "UpBlock2D"),
    ...                    layers_per_block=1, norm_num_groups=4)
    >>> import numpy as np
    >>> images = np.random.default_rng(0).random((6, 3, 16, 16), dtype=np.float32)
    >>> extractor = FeatureExtractor(unet, sigma=0.5, random_state=0).fit(images)
    >>> extractor.transform(images).shape
    (6, 64)
    >>> extractor.transform_views(images).shape
    (6, 4, 16)
    """

    _parameter_constraints = {
        "backbone": [nn.Module, Backbone, str, os.PathLike],
        "layer": [str, None],
        "sigma": [Interval(Real, 0, None, closed="left")],
        "n_views": [Interval(Integral, 1, None, closed="left")],
        "augment": [StrOptions({"default"}), callable, None],
        "pooling": [StrOptions({"auto", "mean", "flatten"}), callable],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device, None],
        "random_state": ["random_state"],
        "progress": ["boolean"],
        "early_exit": ["boolean"],
        "precision": [StrOptions({"float32", "bfloat16"})],
    }

    def __init__(
        self,
        backbone,
        layer=None,
        sigma=0.2,
        n_views=4,
        augment="default",
        pooling="auto",
        batch_size=32,
        device=None,
        random_state=None,
        progress=False,
        early_exit=True,
        precision="float32",
    ):
        self.backbone = backbone
        self.layer = layer
        self.sigma = sigma
        self.n_views = n_views
        self.augment = augment
        self.pooling = pooling
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.progress = progress
        self.early_exit = early_exit
        self.precision = precision

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, images, y=None):
        """Resolve the backbone and layer, check the images, measure ``d``.

        Runs the network once on one image to learn the feature dimension.

        Parameters
        ----------
        images : array-like or Tensor of shape (n, C, H, W), (n, H, W, C) or (n, H, W)
            uint8 in [0, 255] or float in [0, 1].
        y : None
            Ignored.

        Returns
        -------
        self : FeatureExtractor
            The extractor, with the backbone, layer and feature width resolved.
        """
        backbone = as_backbone(self.backbone)
        device = torch.device(self.device) if self.device is not None else backbone.device
        backbone.to(device)  # a no-op for the network by default; brings a VAE along
        layer = self.layer if self.layer is not None else backbone.default_layer
        if layer is None:
            raise ValueError(
                f"{type(backbone.module).__name__} has no default layer; pass layer=..., one of "
                f"{backbone.layer_names()[:8]} ... (skicr.list_layers lists them all)."
            )
        backbone.get_layer(layer)  # unknown layer: error with close matches
        backbone.check_sigma(self.sigma)
        batches = check_images(images, expected_channels=backbone.in_channels)

        self.backbone_ = backbone
        self.layer_ = layer
        self.device_ = device
        probe = self._run(batches, n_views=1, augment=None, stop=1)
        self.n_features_out_ = int(probe.shape[2])
        return self

    def _base_seed(self):
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _extraction_options(self, *, n_views=None, augment="param", progress=None):
        """Keyword arguments of the extraction core for this extractor's settings."""
        return dict(
            sigma=self.sigma,
            n_views=self.n_views if n_views is None else n_views,
            augment=self.augment if augment == "param" else augment,
            pooling=self.pooling,
            batch_size=self.batch_size,
            device=self.device_,
            base_seed=self._base_seed(),
            progress=self.progress if progress is None else progress,
            early_exit=self.early_exit,
            precision=self.precision,
        )

    def _run(self, batches, *, n_views=None, augment="param", stop=None, layers=None):
        """Views of ``batches``: an ndarray for the extractor's layer, or a dict over ``layers``."""
        options = self._extraction_options(
            n_views=n_views, augment=augment, progress=self.progress and stop is None
        )
        wanted = (self.layer_,) if layers is None else tuple(layers)
        out = _extract_views(self.backbone_, batches, layers=wanted, stop=stop, **options)
        return out[self.layer_] if layers is None else out

    def transform_views(self, images):
        """Features of every view, grouped: shape (n_images, n_views, d).

        Parameters
        ----------
        images : array-like or Tensor of shape (n, C, H, W), (n, H, W, C) or (n, H, W)
            uint8 in [0, 255] or float in [0, 1].

        Returns
        -------
        views : ndarray of shape (n_images, n_views, n_features_out), float32
            Pooled layer features of every view of every image.
        """
        check_is_fitted(self)
        self._validate_params()
        self.backbone_.check_sigma(self.sigma)
        batches = check_images(images, expected_channels=self.backbone_.in_channels)
        return self._run(batches)

    def transform_layer_views(self, images, layers):
        """Views of several layers from one forward pass per batch.

        Hooks every layer in ``layers``; with ``early_exit`` the pass stops
        once the deepest of them has run. Each layer's features equal what
        ``transform_views`` gives with ``layer`` set to it (same views, same
        noise).

        Parameters
        ----------
        images : array-like or Tensor of shape (n, C, H, W), (n, H, W, C) or (n, H, W)
            uint8 in [0, 255] or float in [0, 1].
        layers : sequence of str
            Distinct layer names (see :func:`list_layers`).

        Returns
        -------
        views : dict of str to ndarray of shape (n_images, n_views, d_layer)
            float32 features of every view, one entry per layer, in the
            order given.
        """
        check_is_fitted(self)
        self._validate_params()
        layers = _check_layer_list(self.backbone_, layers)
        self.backbone_.check_sigma(self.sigma)
        batches = check_images(images, expected_channels=self.backbone_.in_channels)
        return self._run(batches, layers=layers)

    def transform(self, images):
        """Features of every view, flattened with views contiguous.

        Parameters
        ----------
        images : array-like or Tensor of shape (n, C, H, W), (n, H, W, C) or (n, H, W)
            uint8 in [0, 255] or float in [0, 1].

        Returns
        -------
        X : ViewArray of shape (n_images, n_views * n_features_out)
            A float32 ndarray that carries ``n_views``; columns
            ``[v * d:(v + 1) * d]`` are view ``v``. A DataFrame with
            ``view{v}_...`` columns under ``set_output(transform="pandas")``.
        """
        views = self.transform_views(images)
        return ViewArray(views.reshape(views.shape[0], -1), self.n_views)

    def get_feature_names_out(self, input_features=None):
        """Names ``view{v}_{layer}_{j}`` of the output columns.

        Parameters
        ----------
        input_features : None
            Ignored (the input is images).

        Returns
        -------
        feature_names_out : ndarray of str objects
            ``view{v}_{layer}_{j}``, views contiguous.
        """
        check_is_fitted(self, "n_features_out_")
        names = [f"{self.layer_}_{j}" for j in range(self.n_features_out_)]
        return view_feature_names(self.n_views, names)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.random_state is None
        return tags

    def __sklearn_clone__(self):
        # as sklearn's clone, but the backbone (network weights) is shared, not deep-copied
        params = self.get_params(deep=False)
        new_params = {
            name: value if name == "backbone" else clone(value, safe=False)
            for name, value in params.items()
        }
        new = type(self)(**new_params)
        if hasattr(self, "_metadata_request"):
            new._metadata_request = copy.deepcopy(self._metadata_request)
        if hasattr(self, "_skl_callbacks"):  # shared by reference, as sklearn does
            new._skl_callbacks = self._skl_callbacks
        if hasattr(self, "_sklearn_output_config"):
            new._sklearn_output_config = copy.deepcopy(self._sklearn_output_config)
        return new

    def __getstate__(self):
        state = dict(super().__getstate__())
        backbone = state.get("backbone")
        if isinstance(backbone, nn.Module):
            fitted = state.get("backbone_")
            if fitted is not None and fitted.module is backbone:
                # the fitted adapter pickles the module once (weights via torch.save)
                state["backbone"] = _FittedModule()
            else:
                state["backbone"] = ModuleArchive(backbone)
        return state

    def __setstate__(self, state):
        state = dict(state)
        backbone = state.get("backbone")
        if isinstance(backbone, _FittedModule):
            state["backbone"] = state["backbone_"].module
        elif isinstance(backbone, ModuleArchive):
            state["backbone"] = backbone.restore()
        super().__setstate__(state)

