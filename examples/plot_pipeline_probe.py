"""
A Pipeline from images to a linear probe
========================================

The whole path from images to predictions is one scikit-learn
:class:`~sklearn.pipeline.Pipeline`: the :class:`~skicr.FeatureExtractor`
turns images into grouped views, the
:class:`~skicr.InvariantResidualDecomposer` keeps each image's invariant part
(the mean of its views) on the top Fisher directions, and a logistic
regression reads the digit from it. Rows are images, so labels stay aligned
and cross-validation splits by image: no view of a test image is seen in
training.

``n_views`` is set once, on the extractor; the decomposer reads it from the
extractor's output.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_val_score, cross_validate
from sklearn.pipeline import Pipeline

from skicr import FeatureExtractor, ICRScorer, InvariantResidualDecomposer
from skicr.datasets import load_digits_images
from skicr.models import load_pretrained

images, labels = load_digits_images()
subset = np.random.default_rng(1).choice(len(images), size=300, replace=False)
images, labels = images[subset], labels[subset]

extractor = FeatureExtractor(load_pretrained("digits"), sigma=0.2, n_views=4,
                             random_state=0)
pipe = Pipeline([
    ("extract", extractor),
    ("decompose", InvariantResidualDecomposer(n_components=32)),
    ("probe", LogisticRegression(max_iter=1000)),
])
folds = KFold(5, shuffle=True, random_state=0)
scores = cross_val_score(pipe, images, labels, cv=folds)
print(f"accuracy: {scores.mean():.3f} +- {scores.std():.3f}")

# %%
# What travels between the steps
# ------------------------------
# The extractor's output has one row per image and the views side by side
# in the columns, ``n_views * d`` of them. It is a
# :class:`~skicr.views.ViewArray`, a numpy array that remembers
# ``n_views``, even after row indexing by a cross-validation splitter.
extract = pipe.named_steps["extract"]
X = extract.fit_transform(images)
print(type(X).__name__, X.shape, "n_views =", X.n_views)
print("after row indexing: n_views =", X[:10].n_views)

# %%
# With ``set_output(transform="pandas")`` the columns are named
# ``view{v}_{layer}_{j}``, from which the decomposer reads ``n_views`` too.
frame = extract.set_output(transform="pandas").transform(images[:3])
extract.set_output(transform="default")
print(list(frame.columns[:3]), "...", list(frame.columns[-2:]))

# %%
# Label-free and labelled scores on the same folds
# ------------------------------------------------
# :class:`~skicr.ICRScorer` scores a fitted pipeline without labels: it runs
# the steps before the decomposer on the test images and returns minus the
# held-out ICR along the Fisher directions learnt on the training images
# (greater is better, as scikit-learn expects). ``cross_validate`` computes
# it beside the probe's accuracy. Here at three noise levels:
rows = []
for sigma in [0.05, 0.2, 1.0]:
    pipe.set_params(extract__sigma=sigma)  # cheap: clones share the network
    result = cross_validate(
        pipe, images, labels, cv=folds,
        scoring={"accuracy": "accuracy", "icr": ICRScorer()},
    )
    rows.append({
        "sigma": sigma,
        "held-out ICR": -result["test_icr"].mean(),
        "probe accuracy": result["test_accuracy"].mean(),
    })
table = pd.DataFrame(rows)
table.round(3)

# %%
# The two scores side by side: the label-free one (lower is cleaner) and the
# probe's accuracy, on the same five folds.
fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
ax.plot(table["sigma"], table["held-out ICR"], "o-", label="held-out ICR")
ax.set_xscale("log")
ax.set_xlabel("noise level sigma")
ax.set_ylabel("held-out ICR (lower is cleaner)", color="tab:blue")
twin = ax.twinx()
twin.plot(table["sigma"], table["probe accuracy"], "s--", color="tab:orange")
twin.set_ylabel("probe accuracy", color="tab:orange")
_ = ax.set_title("Pipeline(extract, decompose, probe), 300 digits, 5 folds")

# %%
# Each fold runs the backbone on its training and test images, once per
# setting. To scan many noise levels, prefer
# :class:`~skicr.NoiseLevelSelector` (see
# :ref:`sphx_glr_auto_examples_plot_noise_level_selection.py`), which runs the
# backbone once per sigma and reuses the features in every fold.
