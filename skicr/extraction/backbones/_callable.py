"""Any network, called through a user function."""

from ._base import Backbone

__all__ = ["CallableBackbone"]


class CallableBackbone(Backbone):
    """Any network, called through a user function.

    Parameters
    ----------
    module : torch.nn.Module
        The network whose layers are read.
    forward_fn : callable
        ``forward_fn(module, noisy_images, sigma)`` runs the network on
        ``noisy_images = x0 + sigma * eps`` (data in [-1, 1] or latents,
        shape (n, C, H, W), on the module's device) at the VE noise level
        ``sigma`` (float); it does any scaling and time conditioning the
        model needs. Its return value is ignored. Pickling the adapter needs
        a picklable function (defined at module level, not a lambda).
    vae : diffusers.AutoencoderKL or None, default=None
    in_channels : int or None, default=None
    default_layer : str or None, default=None

    Examples
    --------
    Any network, with a function that maps noisy images in [-1, 1] and sigma
    to a forward call:

    >>> import numpy as np
    >>> import torch
    >>> from skicr.extraction import CallableBackbone, FeatureExtractor
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU())
    >>> backbone = CallableBackbone(net, lambda module, x, sigma: module(x),
    ...                             default_layer="0")
    >>> images = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    >>> FeatureExtractor(backbone, n_views=3, random_state=0).fit(images).transform_views(
    ...     images).shape
    (5, 3, 4)
    """

    def __init__(self, module, forward_fn, *, vae=None, in_channels=None, default_layer=None):
        if not callable(forward_fn):
            raise TypeError(f"forward_fn must be callable; got {type(forward_fn).__name__}.")
        super().__init__(module, vae=vae, in_channels=in_channels, default_layer=default_layer)
        self.forward_fn = forward_fn

    def forward(self, noisy, sigma):
        return self.forward_fn(self.module, noisy, float(sigma))
