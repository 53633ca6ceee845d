"""FeatureExtractor: grouped view features of a frozen denoiser at one noise level."""

import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._utils.images import check_images
from .._utils.serialization import ModuleArchive
from .._utils.validation import SIGMA_RANGE, check_layer_list, check_torch_device
from ..views import ViewArray, view_feature_names
from ._engine import ViewSpec, extract_views
from .backbones import Backbone, as_backbone

__all__ = ["FeatureExtractor"]

class _FittedModule:
    """Pickle marker: the ``backbone`` parameter is the fitted adapter's module."""


class _Shared:
    """A parameter value that :func:`sklearn.base.clone` passes on as it is (not deep-copied)."""

    def __init__(self, value):
        self.value = value

    def __sklearn_clone__(self):
        return self


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
        VE noise std relative to images in [-1, 1]: 0, or in ``[1e-18, 1e18]``
        (beyond it ``sigma**2`` leaves float32's range).
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
        # 0 (no noise) or a level every backbone can run at (float32-safe sigma**2)
        "sigma": [Interval(Real, *SIGMA_RANGE, closed="both"), Options(Real, {0.0})],
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
        device = check_torch_device(self.device) if self.device is not None else backbone.device
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
        # one noise-only view of one image: the feature width
        spec = self._spec(progress=False).replace(n_views=1, augment=None)
        probe = extract_views(backbone, batches, (layer,), spec, stop=1)[layer]
        self.n_features_out_ = int(probe.shape[2])
        return self

    def view_spec(self, *, base_seed=None, progress=None):
        """The settings of an extraction run: what this extractor's parameters resolve to.

        Checks the parameters (they may have been set since ``fit``) and
        ``sigma`` against the backbone, and draws the run's base seed from
        ``random_state`` (one fresh seed per call when it is None). Drives
        :func:`skicr.extraction.iter_view_chunks`, as :mod:`skicr.streaming`
        does.

        Parameters
        ----------
        base_seed : int or None, default=None
            Use this seed of the augmentation and noise streams instead of
            one drawn from ``random_state`` (a resumed or distributed stream).
        progress : bool or None, default=None
            Progress bar over chunks; None uses ``progress``.

        Returns
        -------
        spec : ViewSpec
            Frozen settings: sigma, views, augmentation, pooling, batch size,
            device, seed, early exit, precision, progress.
        """
        check_is_fitted(self)
        self._validate_params()
        self.backbone_.check_sigma(self.sigma)
        return self._spec(base_seed, progress)

    def _spec(self, base_seed=None, progress=None):
        """:meth:`view_spec` without the checks (``fit`` has just made them)."""
        if base_seed is None:
            base_seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        return ViewSpec(
            sigma=self.sigma,
            n_views=self.n_views,
            augment=self.augment,
            pooling=self.pooling,
            batch_size=self.batch_size,
            device=self.device_,
            base_seed=int(base_seed),
            early_exit=self.early_exit,
            precision=self.precision,
            progress=self.progress if progress is None else progress,
        )

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
        spec = self.view_spec()
        batches = check_images(images, expected_channels=self.backbone_.in_channels)
        return extract_views(self.backbone_, batches, (self.layer_,), spec)[self.layer_]

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
        spec = self.view_spec()
        layers = check_layer_list(self.backbone_, layers)
        batches = check_images(images, expected_channels=self.backbone_.in_channels)
        return extract_views(self.backbone_, batches, layers, spec)

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
        # sklearn's own clone, with the backbone (network weights) shared instead of
        # deep-copied: clone() calls __sklearn_clone__ on every parameter that has one,
        # and _Shared returns itself, so sklearn's routine (metadata requests, output
        # config, callbacks) stays sklearn's
        shallow = object.__new__(type(self))
        shallow.__dict__.update(self.__dict__)  # no __getstate__: nothing is archived
        shallow.backbone = _Shared(self.backbone)
        new = super(FeatureExtractor, shallow).__sklearn_clone__()
        new.backbone = self.backbone
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

