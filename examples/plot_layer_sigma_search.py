"""
Searching layers and noise levels together
==========================================

Which layer of a denoiser, read at which noise level sigma, gives the best
features? :class:`~skicr.NoiseLevelSelector` with ``layers`` searches both at
once. Per sigma the backbone runs **once**: hooks on every candidate layer
capture their outputs in the same forward pass, which stops after the
deepest of them. The folds then score each layer's features separately, so
the layers may have different widths.

The result is an ICR surface over (layer, sigma). Here the digits' labels
only check the label-free surface against a linear probe on the same folds.
"""

# %%
# The joint search
# ----------------
import textwrap
import warnings

import numpy as np

from skicr import FeatureExtractor, NoiseLevelSelector
from skicr.datasets import load_digits_images
from skicr.models import load_pretrained
from skicr.recipes import make_probe

images, labels = load_digits_images()
subset = np.random.default_rng(0).choice(len(images), size=400, replace=False)
images, labels = images[subset], labels[subset]

# the selector warns when its choice means little; print that note wrapped
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    selector = NoiseLevelSelector(
        FeatureExtractor(load_pretrained("digits"), n_views=4),
        sigmas=np.geomspace(0.01, 2.0, 6),
        layers=["down.0", "down.1", "mid", "up.0"],
        probe=make_probe(),
        cv=4,
        random_state=0,
    ).fit(images, labels)
for warning in caught:
    print(textwrap.fill(f"{warning.category.__name__}: {warning.message}", 72))
print(f"lowest held-out ICR: layer {selector.best_layer_!r}, "
      f"sigma {selector.best_sigma_:.3g}")

# %%
# ``icr_surface_`` holds the mean held-out ICR as a layers x sigmas table
# (``probe_surface_`` the probe accuracy, laid out the same way).
selector.icr_surface_.round(3)

# %%
selector.probe_surface_.round(3)

# %%
# The heat map marks the label-free choice (solid) and the probe optimum
# (dashed).
ax = selector.plot()
_ = ax.set_title("400 digits, 4 views: held-out ICR over layer x sigma")

# %%
# Reading the surface
# -------------------
# Along sigma, within one layer, the ICR minimum tracks the probe peak (the
# noise-level selection the ICR was built for). Across layers the ICR values
# are less comparable: each layer has its own width and its own kind of
# invariance, and shallow layers at tiny noise look clean because they
# barely change between views. On the full digits study (see the scan page of
# the documentation) the label-free cell misses the probe's best layer, so
# use the surface to set each layer's sigma and a few labels to choose
# between layers: ``layer_scoring="probe", n_labels_per_class=5`` keeps sigma
# label-free within each layer and compares the layers by a probe trained on
# five labelled images per class (the layer study of the documentation
# measures how many labels it takes); ``label_free_choice_`` says which part
# of a choice used labels.
best_per_layer = selector.icr_surface_.idxmin(axis=1)
probe_best_per_layer = selector.probe_surface_.idxmax(axis=1)
for layer in selector.icr_surface_.index:
    print(f"{layer:>7}: ICR min at sigma {best_per_layer[layer]:.3g}, "
          f"probe peak at sigma {probe_best_per_layer[layer]:.3g}")
