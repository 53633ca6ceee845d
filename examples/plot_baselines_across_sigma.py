"""
ICR beside other label-free metrics
===================================

Several label-free measures of representation quality have been proposed
for self-supervised learning. skicr computes them on the same grouped
views as ICR (:mod:`skicr.metrics`):

- **ICR** (lower is cleaner): ``1 / (1 + mean(lambda))`` of the generalized
  spectrum ``Sigma_s v = lambda (Sigma_xi + tau I) v``.
- **LiDAR** (Thilak et al. 2023, higher is richer): the effective rank of the
  same kind of spectrum, images as classes.
- **RankMe** (Garrido et al. 2023, higher is richer): the effective rank of
  the matrix of all view embeddings.
- **alignment** and **uniformity** (Wang & Isola 2020, lower is better for
  both): the distance between views of one image, and how spread out
  different images are, on L2-normalised features.

We compute all of them across noise levels on the bundled denoiser and put
them beside the accuracy of a linear probe.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.model_selection import cross_val_score

from skicr import FeatureExtractor
from skicr.datasets import load_digits_images
from skicr.metrics import alignment, icr_score, lidar, rankme, uniformity
from skicr.models import load_pretrained
from skicr.recipes import make_probe

images, labels = load_digits_images()
subset = np.random.default_rng(3).choice(len(images), size=300, replace=False)
images, labels = images[subset], labels[subset]
extractor = FeatureExtractor(load_pretrained("digits"), layer="mid", n_views=4,
                             random_state=0)

# %%
# One extraction per sigma; every metric reads the same views
# ``(n_images, n_views, d)``. The probe sees one noisy view per image.
probe = make_probe()
rows = []
for sigma in np.geomspace(0.02, 3.0, 6):
    views = extractor.set_params(sigma=sigma).fit(images).transform_views(images)
    rows.append({
        "sigma": sigma,
        "ICR": icr_score(views),
        "LiDAR": lidar(views),
        "RankMe": rankme(views),
        "alignment": alignment(views),
        "uniformity": uniformity(views),
        "probe accuracy": cross_val_score(probe, views[:, 0], labels, cv=3).mean(),
    })
table = pd.DataFrame(rows)
table.round(4)

# %%
# Each panel is one metric across sigma, with the probe accuracy in grey on
# a second axis.
metrics = ["ICR", "LiDAR", "RankMe", "alignment", "uniformity"]
fig, axes = plt.subplots(2, 3, figsize=(9, 5.6), layout="constrained")
axes[-1, -1].set_axis_off()  # five metrics, six cells
for ax, name in zip(axes.flat, metrics):
    ax.plot(table["sigma"], table[name], marker="o")
    ax.set_xscale("log")
    ax.set_xlabel("sigma")
    ax.set_title(name)
    twin = ax.twinx()
    twin.plot(table["sigma"], table["probe accuracy"], color="grey", linestyle="--")
    twin.set_yticks([])
_ = fig.suptitle("Label-free metrics (solid) and probe accuracy (dashed, grey)")

# %%
# Rank agreement with the probe
# -----------------------------
# Spearman correlation across sigma between each metric, oriented so that
# greater means better, and the probe's accuracy:
orientation = {"ICR": -1, "LiDAR": 1, "RankMe": 1, "alignment": -1, "uniformity": -1}
pd.Series({
    name: (sign * table[name]).corr(table["probe accuracy"], method="spearman")
    for name, sign in orientation.items()
}).round(2)

# %%
# Why ICR is scale-free where alignment is not
# --------------------------------------------
# Alignment measures absolute distances between views: a representation
# that expands (spreads images further apart) can get worse alignment even
# when its views agree better relative to that spread. ICR compares the
# invariant and residual covariances with each other; with ``tau = 0`` it
# is unchanged by any invertible linear map of the features, and with the
# default relative ``tau`` by rescaling and rotation. Stretching some
# feature axes changes alignment but leaves ICR as it is:
views = extractor.set_params(sigma=0.2).fit(images).transform_views(images)
stretch = np.linspace(0.2, 5.0, views.shape[-1])  # an anisotropic rescaling
print(f"ICR (tau=0):  {icr_score(views, tau=0):.4f} -> "
      f"{icr_score(views * stretch, tau=0):.4f}")
print(f"alignment:    {alignment(views):.4f} -> {alignment(views * stretch):.4f}")
