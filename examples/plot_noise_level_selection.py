"""
Choosing the noise level without labels
=======================================

A diffusion denoiser gives different features at every noise level sigma:
too little noise and the features copy pixels, too much and the image is
gone. :class:`~skicr.NoiseLevelSelector` scans a grid of sigmas and picks the
one whose features have the lowest held-out Invariant Contamination Ratio
(ICR). No label is used for the choice; here the labels of the digits only
serve to check it against a linear probe on the same folds.

The backbone runs once per sigma: cross-validation folds reuse the features.
"""

# %%
# Data and model
# --------------
# skicr ships a small EDM denoiser trained on sklearn's digits (16x16). We
# take a random subset of 400 digits to keep the example fast.
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from skicr import FeatureExtractor, NoiseLevelSelector
from skicr.datasets import load_digits_images
from skicr.models import load_pretrained
from skicr.recipes import make_probe

images, labels = load_digits_images()
subset = np.random.default_rng(0).choice(len(images), size=400, replace=False)
images, labels = images[subset], labels[subset]
net = load_pretrained("digits")
print(images.shape, images.dtype, images.min(), images.max())

# %%
# The scan
# --------
# Four views of each image (random affine augmentation + fresh noise at
# sigma) are read at the bottleneck ``mid`` and averaged over space (96
# features per view). The selector seeds the views, so every sigma sees the
# same augmentations and the same standard-normal noise, scaled by sigma:
# the curve is smooth.
extractor = FeatureExtractor(net, layer="mid", n_views=4, pooling="mean")
probe = make_probe()
selector = NoiseLevelSelector(
    extractor,
    sigmas=np.geomspace(0.01, 3.0, 7),
    probe=probe,  # only reported, never used for the choice
    cv=4,
    random_state=0,
)
selector.fit(images, labels)
print(f"chosen sigma: {selector.best_sigma_:.3g}")

# %%
# ``cv_results_`` is a dict of arrays, ready for pandas.
columns = ["sigma", "mean_icr", "std_icr", "mean_probe_accuracy", "std_probe_accuracy",
           "extract_time"]
results = pd.DataFrame(selector.cv_results_)[columns]
results.round(4)

# %%
# ICR (lower is cleaner) against the accuracy of a logistic-regression
# probe on one noisy view. The dotted line is the label-free choice.
ax = selector.plot()
_ = ax.set_title("400 digits, bottleneck 'mid' (spatial mean), 4 views")

# %%
# How well does the label-free ranking follow the probe? A Spearman
# correlation between ``-ICR`` and the accuracy across the grid:
rho = spearmanr(-results["mean_icr"], results["mean_probe_accuracy"]).statistic
best_probe = results["sigma"][results["mean_probe_accuracy"].idxmax()]
print(f"Spearman(-ICR, accuracy) = {rho:.2f}; "
      f"probe accuracy peaks at sigma = {best_probe:.3g}")

# %%
# Pooling changes the curve
# -------------------------
# Which sigma looks cleanest depends on what is measured, not only on the
# model: the layer, the pooling and the strength of the augmentation (see
# :ref:`user-guide-choosing`). Here is the in-sample ICR of the same views
# with the feature map kept whole (``pooling="flatten"``, 1536 features per
# view), computed with the one-call :func:`~skicr.metrics.icr_score` (the
# trace identity, no eigendecomposition):
from skicr.metrics import icr_score

flattened = FeatureExtractor(net, layer="mid", n_views=4, pooling="flatten",
                             random_state=0)
flat_icr = [
    icr_score(flattened.set_params(sigma=sigma).fit(images).transform_views(images))
    for sigma in results["sigma"]
]
comparison = pd.DataFrame({
    "sigma": results["sigma"],
    "ICR, mean pooling (held-out)": results["mean_icr"],
    "ICR, flattened (in-sample)": flat_icr,
})
comparison.round(4)

# %%
# Where each curve is lowest:
for column in comparison.columns[1:]:
    lowest = comparison["sigma"][comparison[column].idxmin()]
    print(f"{column}: lowest at sigma = {lowest:.3g}")

# %%
# The two kinds of features need not agree on the cleanest sigma, and
# their ICR values are not comparable with each other (they measure
# different representations, of different dimension). Compare one kind of
# feature across sigma, and check the choice once with a probe, as above,
# before trusting it on a new model or layer.

# %%
# Use the chosen features
# -----------------------
# With ``refit=True`` (the default) the selector keeps the pipeline at the
# chosen sigma, fitted on all images; ``transform`` gives the invariant part
# of new images on its Fisher directions.
features = selector.transform(images[:5])
print(list(selector.best_estimator_.named_steps), features.shape)
