"""EDM-preconditioned networks (variance exploding; skicr's own denoiser, NVlabs EDM)."""

import torch

from .._noise import edm_c_noise_to_sigma, edm_input_scaling
from ._base import Backbone, _batch_tensor

__all__ = ["EDMBackbone"]


class EDMBackbone(Backbone):
    """EDM-preconditioned networks (variance exploding).

    With ``call="raw"`` the raw network ``F`` of
    ``D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)`` is called as
    ``net(c_in * x, c_noise)``, ``c_noise = log(sigma) / 4`` a tensor of shape
    ``(n,)`` (skicr's own denoiser). With ``call="preconditioned"`` the
    network does the preconditioning itself and is called as
    ``net(x, sigma)`` (NVlabs EDM's ``EDMPrecond``).

    Parameters
    ----------
    net : torch.nn.Module
    sigma_data : float, default=0.5
        Data std of the preconditioning (0.5 for data in [-1, 1]).
    call : {"raw", "preconditioned"}, default="raw"
    class_label : int or None, default=None
        Passed as a third argument (a label tensor of shape (n,)) when not None.
    in_channels : int or None, default=None
    default_layer : str or None, default=None
        None guesses (``mid`` for skicr's denoiser).

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.extraction import EDMBackbone, FeatureExtractor
    >>> from skicr.models import SmallUNet
    >>> backbone = EDMBackbone(SmallUNet(channels=(8, 16), mid_channels=16))
    >>> images = np.random.default_rng(0).random((6, 1, 16, 16), dtype=np.float32)
    >>> extractor = FeatureExtractor(backbone, layer="mid", sigma=0.2, n_views=2,
    ...                              random_state=0)
    >>> extractor.fit(images).transform_views(images).shape   # 16 channels, spatial mean
    (6, 2, 16)
    """

    def __init__(self, net, sigma_data=0.5, *, call="raw", class_label=None,
                 in_channels=None, default_layer=None):
        super().__init__(net, in_channels=in_channels, default_layer=default_layer)
        if call not in ("raw", "preconditioned"):
            raise ValueError(f"call must be 'raw' or 'preconditioned'; got {call!r}.")
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0; got {sigma_data!r}.")
        self.sigma_data = float(sigma_data)
        self.call = call
        self.class_label = class_label

    def check_sigma(self, sigma):
        if not sigma > 0:
            raise ValueError(
                f"EDM conditioning needs sigma > 0 (c_noise = log(sigma) / 4); got {sigma!r}."
            )

    def c_noise(self, sigma):
        """Noise conditioning ``log(sigma) / 4``.

        Parameters
        ----------
        sigma : float

        Returns
        -------
        c_noise : float
        """
        return edm_input_scaling(sigma, self.sigma_data)[1]

    def sigma_at(self, c_noise):
        """Inverse of :meth:`c_noise`.

        Parameters
        ----------
        c_noise : float

        Returns
        -------
        sigma : float
        """
        return float(edm_c_noise_to_sigma(c_noise))

    def forward(self, noisy, sigma):
        c_in, c_noise = edm_input_scaling(sigma, self.sigma_data)
        batch, device, dtype = noisy.shape[0], noisy.device, self.dtype
        args = []
        if self.class_label is not None:
            args.append(_batch_tensor(self.class_label, batch, device, torch.long))
        if self.call == "raw":
            return self.module((c_in * noisy).to(dtype), _batch_tensor(c_noise, batch, device, dtype), *args)
        return self.module(noisy.to(dtype), _batch_tensor(float(sigma), batch, device, dtype), *args)
