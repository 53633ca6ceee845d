"""diffusers ``DiTTransformer2DModel`` (variance preserving, token features, optional VAE)."""

import os
from pathlib import Path

import torch

from ._base import Backbone, _batch_tensor
from ._diffusers import _is_diffusers, _load_diffusers_model, _scheduler_dir
from ._vp import _VPMixin

__all__ = ["DiTBackbone"]


class DiTBackbone(_VPMixin, Backbone):
    """diffusers ``DiTTransformer2DModel`` (variance preserving, token features).

    Blocks are ``transformer_blocks.{k}``; their outputs are tokens
    ``(n, n_tokens, width)``. The class input defaults to the null
    (unconditional) class that classifier-free guidance was trained with.

    Parameters
    ----------
    transformer : diffusers.DiTTransformer2DModel or path
        An instance, or a local directory (a pipeline folder with
        ``transformer/``, ``vae/`` and ``scheduler/``, or the model folder).
    vae : diffusers.AutoencoderKL, path or None, default=None
        Encoder for latent DiTs (the released DiT-XL/2 checkpoints). None with
        a pipeline folder loads its ``vae/`` when there is one.
    scheduler : scheduler, path, array or None, default=None
        As for :class:`UNet2DBackbone` (DiT was trained on DDPM's linear schedule).
    class_label : int or None, default=None
        Class fed to the network; None means the null class
        (``num_embeds_ada_norm``).
    default_layer : str or None, default=None
        None means the middle block, ``transformer_blocks.{num_layers // 2}``.
    """

    def __init__(self, transformer, vae=None, scheduler=None, *, class_label=None, default_layer=None):
        if isinstance(transformer, (str, os.PathLike)):
            path = Path(transformer)
            transformer = _load_diffusers_model(path, "DiTTransformer2DModel", subfolder="transformer")
            if vae is None and (path / "vae" / "config.json").is_file():
                vae = path / "vae"
            if scheduler is None and _scheduler_dir(path) is not None:
                scheduler = path
        if isinstance(vae, (str, os.PathLike)):
            vae = _load_diffusers_model(Path(vae), "AutoencoderKL", subfolder="vae")
        if not _is_diffusers(transformer, "DiTTransformer2DModel"):
            raise TypeError(
                "DiTBackbone needs a diffusers DiTTransformer2DModel; got "
                f"{type(transformer).__name__}."
            )
        if default_layer is None:
            default_layer = f"transformer_blocks.{transformer.config.num_layers // 2}"
        super().__init__(transformer, vae=vae, default_layer=default_layer)
        self._set_schedule(scheduler)
        n_classes = int(transformer.config.num_embeds_ada_norm)
        if class_label is None:
            class_label = n_classes  # the classifier-free-guidance "null" class
        if not 0 <= int(class_label) <= n_classes:
            raise ValueError(f"class_label must be in [0, {n_classes}]; got {class_label}.")
        self.class_label = int(class_label)

    def _model_in_channels(self):
        return int(self.module.config.in_channels)

    def forward(self, noisy, sigma):
        x_t, timesteps = self._vp_inputs(noisy, sigma)
        labels = _batch_tensor(self.class_label, x_t.shape[0], x_t.device, torch.long)
        return self.module(x_t.to(self.dtype), timestep=timesteps, class_labels=labels, return_dict=False)
