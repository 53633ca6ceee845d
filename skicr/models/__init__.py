"""The project's own small diffusion denoisers: networks, training losses, sampler, weights.

The embedded default backbone of skicr is :class:`SmallUNet`, an EDM raw
network ``F`` called as ``net(c_in * x, c_noise)`` with images in [-1, 1],
trained on sklearn's digits (16x16) by ``python -m skicr.models.train`` and
shipped as ``skicr/models/weights/digits.pt``::

    from skicr.models import load_pretrained, edm_sampler
    net = load_pretrained("digits")          # raw F, eval mode, bottleneck net.mid
    samples = edm_sampler(net, 16, seed=0)   # (16, 1, 16, 16) in [0, 1]

The zoo of the noise-level study (``benchmarks/zoo/``, ``docs/zoo.md``) adds a
DiT-like :class:`SmallDiT`, the VP-epsilon and flow-matching losses, and one
checkpoint format for every architecture and parameterisation
(:func:`save_checkpoint`, :func:`load_checkpoint`, which returns the backbone
adapter the feature extractor needs).
"""

from ._checkpoint import PARAMETERIZATIONS, load_checkpoint, save_checkpoint
from ._edm import P_MEAN, P_STD, SIGMA_DATA, EDMPrecond, edm_loss, edm_preconditioning
from ._objectives import ddpm_alphas_cumprod, flow_matching_loss, vp_epsilon_loss
from ._pretrained import PRETRAINED, UnverifiedFileWarning, load_denoiser, load_pretrained, save_denoiser
from ._sampler import edm_sampler, edm_sigma_steps
from ._small_dit import SmallDiT
from ._training import TrainingResult, train_denoiser
from ._unet import SmallUNet

# the seed paper's backbones: official EDM, DiT and SiT releases, rebuilt by skicr
from ._dhariwal_unet import DhariwalUNet
from ._dit import DiT, SiT, TRANSFORMER_CONFIGS, build_transformer, sincos_pos_embed_2d
from ._edm_pickle import UnsafePickleError, load_edm_pickle, read_edm_pickle
from ._edm_precond import PrecondEDM, PrecondIDDPM, PrecondVE, PrecondVP
from ._release_loading import load_release_file
from ._song_unet import SongUNet

__all__ = [
    "SmallUNet",
    "SmallDiT",
    "vp_epsilon_loss",
    "flow_matching_loss",
    "ddpm_alphas_cumprod",
    "save_checkpoint",
    "load_checkpoint",
    "PARAMETERIZATIONS",
    "EDMPrecond",
    "edm_preconditioning",
    "edm_loss",
    "train_denoiser",
    "TrainingResult",
    "edm_sampler",
    "edm_sigma_steps",
    "load_pretrained",
    "load_denoiser",
    "save_denoiser",
    "PRETRAINED",
    "UnverifiedFileWarning",
    "SIGMA_DATA",
    "P_MEAN",
    "P_STD",
    "SongUNet",
    "DhariwalUNet",
    "PrecondEDM",
    "PrecondVP",
    "PrecondVE",
    "PrecondIDDPM",
    "load_edm_pickle",
    "read_edm_pickle",
    "load_release_file",
    "UnsafePickleError",
    "DiT",
    "SiT",
    "build_transformer",
    "TRANSFORMER_CONFIGS",
    "sincos_pos_embed_2d",
]
