"""
Pointing the extractor at a diffusers checkpoint
================================================

skicr never downloads anything at run time. To measure a published model,
download its checkpoint once on a machine with internet access, then give
the folder to :class:`~skicr.FeatureExtractor`.

This example is shown, not run, when the documentation is built (it needs
the downloaded checkpoint). The loading code is the one the test
suite runs on tiny randomly initialised models saved in the same layouts;
see :doc:`../extraction` for every option.

Download (once, with internet access)::

    pip install "skicr[diffusers]"
    huggingface-cli download google/ddpm-cifar10-32 --local-dir ddpm-cifar10-32
"""

# sphinx_gallery_thumbnail_path = "_static/thumb_diffusers_checkpoint.png"

# %%
# DDPM on CIFAR-10: a diffusers ``UNet2DModel``
# ---------------------------------------------
# A folder with ``config.json`` and the weights (plus
# ``scheduler_config.json``), or a pipeline folder with ``unet/`` and
# ``scheduler/``, loads as a VP backbone. ``sigma`` keeps its meaning: the
# VE noise std relative to images in [-1, 1]; the adapter picks the DDPM
# timestep whose noise level matches it.
import numpy as np

from skicr import FeatureExtractor, NoiseLevelSelector, list_layers

print(list_layers("ddpm-cifar10-32", max_depth=2))
# ['conv_in', 'time_proj', 'time_embedding', ..., 'down_blocks', 'down_blocks.0', ...,
#  'up_blocks', 'up_blocks.0', ..., 'mid_block', ...]
extractor = FeatureExtractor("ddpm-cifar10-32", sigma=0.3, n_views=4, random_state=0,
                             device="cuda", batch_size=64)

# %%
# The images: CIFAR-10 as uint8 ``(n, 32, 32, 3)`` (or ``(n, 3, 32, 32)``),
# for instance from a local copy of the dataset.
images = np.load("cifar10_train_uint8.npy")[:2000]

# %%
# The same scan as on the digits, on the U-Net bottleneck:
selector = NoiseLevelSelector(
    extractor.set_params(layer="mid_block"),
    sigmas=np.geomspace(0.02, 5.0, 12),  # DDPM's schedule spans sigma 0.01 to 157
    cv=5,
    random_state=0,
    progress=True,
)
selector.fit(images)
print(selector.best_sigma_)
selector.plot()

# %%
# Explicit objects
# ----------------
# Equivalently, load the model and its noise schedule yourself and wrap them
# in the adapter:
from diffusers import DDPMScheduler, UNet2DModel

from skicr.extraction import UNet2DBackbone

unet = UNet2DModel.from_pretrained("ddpm-cifar10-32")
scheduler = DDPMScheduler.from_pretrained("ddpm-cifar10-32")
backbone = UNet2DBackbone(unet, scheduler=scheduler)
extractor = FeatureExtractor(backbone, layer="mid_block", sigma=0.3, device="cuda")

# %%
# DiT: a latent transformer
# -------------------------
# ``huggingface-cli download facebook/DiT-XL-2-256 --local-dir DiT-XL-2-256``
# gives a pipeline folder with ``transformer/``, ``vae/`` and ``scheduler/``.
# Images must be 256 x 256 RGB; each view is encoded by the VAE and the noise
# is added to the scaled latents. Block outputs are tokens, averaged by the
# default pooling.
from skicr.extraction import load_backbone

backbone = load_backbone("DiT-XL-2-256")
extractor = FeatureExtractor(backbone, layer="transformer_blocks.14", sigma=0.5,
                             device="cuda", precision="bfloat16", batch_size=16)
