"""EDM release networks (NVlabs ``edm-*.pkl``), rebuilt by skicr.

The networks are :class:`skicr.models.PrecondEDM` and the VP / VE / iDDPM
wrappers, read from the pickles by :func:`skicr.models.load_edm_pickle`. They
take the VE-noisy image and ``sigma`` itself and precondition internally
(EDM: ``c_in = 1 / sqrt(sigma^2 + sigma_data^2)``, ``c_noise = ln(sigma) / 4``).
This module does not import :mod:`skicr.models` (which builds on this
package); the network is recognised by its interface.
"""

import warnings

import numpy as np
import torch

from ._base import Backbone, _batch_tensor

__all__ = ["EDMReleaseBackbone"]


def _check_class_label(class_label, n_classes, null_class, what):
    if class_label is None:
        return None
    if isinstance(class_label, bool) or not isinstance(class_label, (int, np.integer)):
        raise TypeError(f"class_label must be an int or None; got {type(class_label).__name__}.")
    top = null_class if null_class is not None else n_classes - 1
    if not 0 <= int(class_label) <= top:
        raise ValueError(f"class_label must be in [0, {top}] for this {what}; got {class_label}.")
    return int(class_label)



class EDMReleaseBackbone(Backbone):
    """An EDM release network (``edm-*.pkl``), rebuilt by skicr.

    Called as ``net(x0 + sigma * eps, sigma, class_labels)``: the network
    preconditions itself (EDM: ``c_in``, ``c_noise = ln(sigma) / 4``; VP / VE /
    iDDPM: their own). Class-conditional networks get the one-hot row of
    ``class_label``.

    Parameters
    ----------
    net : skicr.models.PrecondEDM, PrecondVP, PrecondVE or PrecondIDDPM
        E.g. from :func:`skicr.models.load_edm_pickle`.
    class_label : int or None, default=None
        Required for class-conditional networks (the EDM releases have no
        trained null class: a zero row is outside their training data).
    default_layer : str or None, default=None
        None means the bottleneck, ``model.dec.{r}x{r}_in1`` at the lowest
        resolution ``r`` (the output of the two middle blocks).
    """

    def __init__(self, net, *, class_label=None, default_layer=None):
        if not all(hasattr(net, name) for name in ("model", "coefficients", "label_dim",
                                                   "img_channels", "sigma_min", "sigma_max")):
            raise TypeError(
                "EDMReleaseBackbone needs an EDM release network (skicr.models.load_edm_pickle); "
                f"got {type(net).__name__}."
            )
        if default_layer is None:
            names = [n for n in net.model.dec if n.endswith("_in1")]
            default_layer = f"model.dec.{names[0]}" if names else None
        super().__init__(net, in_channels=net.img_channels, default_layer=default_layer)
        if net.label_dim and class_label is None:
            raise ValueError(
                f"This EDM network is class-conditional ({net.label_dim} classes) and has no "
                "null class; pass class_label=<int> (EDMReleaseBackbone(net, class_label=...) "
                "or load_backbone(path, class_label=...))."
            )
        if not net.label_dim and class_label is not None:
            raise ValueError("class_label was given but this EDM network is unconditional.")
        self.class_label = _check_class_label(class_label, net.label_dim, None, "EDM network")

    def check_sigma(self, sigma):
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"EDM networks need a finite sigma > 0; got {sigma!r}.")
        low, high = float(self.module.sigma_min), float(self.module.sigma_max)
        if sigma < low or sigma > high:
            warnings.warn(
                f"sigma={sigma:g} is outside the range [{low:.4g}, {high:.4g}] this "
                f"{type(self.module).__name__} network was trained on.",
                UserWarning,
                stacklevel=3,
            )

    def c_noise(self, sigma):
        """Noise conditioning the network computes for ``sigma``.

        Parameters
        ----------
        sigma : float

        Returns
        -------
        c_noise : float
        """
        value = torch.tensor([float(sigma)]).reshape(-1, 1, 1, 1)
        return float(torch.as_tensor(self.module.coefficients(value)[3]).flatten()[0])

    def forward(self, noisy, sigma):
        batch, device = noisy.shape[0], noisy.device
        labels = None
        if self.class_label is not None:
            labels = torch.zeros(batch, self.module.label_dim, device=device)
            labels[:, self.class_label] = 1
        sigmas = _batch_tensor(float(sigma), batch, device, torch.float32)
        return self.module(noisy, sigmas, labels)
