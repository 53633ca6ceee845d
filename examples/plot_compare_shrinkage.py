"""
Comparing covariance shrinkage without labels
=============================================

ICR needs two covariance matrices, the invariant one ``Sigma_s`` (between
images) and the residual one ``Sigma_xi`` (between the views of an image).
When the features are wide compared with the number of images, the plain
empirical estimates are noisy and shrinkage helps. Which shrinkage? Use
:class:`~sklearn.model_selection.GridSearchCV` with the label-free
:class:`~skicr.ICRScorer`: each candidate is fitted on training images and
scored by the held-out ICR of the test images. Here the digits' labels are
used only to check the ranking against a linear probe on the same folds.

Every estimator is fitted at the right degrees of freedom: ``Sigma_xi`` on
the ``N (V - 1)`` orthonormal within-image contrasts, ``Sigma_s`` on the
``N`` centred image means (see :ref:`user-guide-shrinkage`).
"""

# %%
# Wide features
# -------------
# The bottleneck feature map of the bundled denoiser is 96 x 4 x 4; pooled
# over 2 x 2 blocks it gives 384 features per view. With 300 images and 4
# views, a training fold has 240 images, so ``Sigma_xi`` is estimated from
# 720 contrast rows and ``Sigma_s`` from 240 image means for 384 features.
# The features are extracted once; the search only refits the decomposer.
import numpy as np
import pandas as pd
import torch.nn.functional as F
from sklearn.covariance import OAS, LedoitWolf, ShrunkCovariance
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline

from skicr import FeatureExtractor, ICRScorer, InvariantResidualDecomposer
from skicr.datasets import load_digits_images
from skicr.models import load_pretrained

images, labels = load_digits_images()
subset = np.random.default_rng(2).choice(len(images), size=300, replace=False)
images, labels = images[subset], labels[subset]


def pool_2x2(feature_map):
    """Average 2 x 2 blocks of the (n, C, h, w) feature map, then flatten."""
    return F.avg_pool2d(feature_map, 2).flatten(1)


extractor = FeatureExtractor(
    load_pretrained("digits"), sigma=0.2, n_views=4, pooling=pool_2x2, random_state=0
)
X = extractor.fit_transform(images)  # (300, 4 * 384), carries n_views=4
print(X.shape)

# %%
# The search
# ----------
# The pipeline ends with a probe so that the accuracy can be reported on
# the same folds; :class:`~skicr.ICRScorer` ignores the steps after the
# decomposer and ``y``. ``refit="icr"`` makes the label-free score choose.
pipe = Pipeline([
    ("decompose", InvariantResidualDecomposer(n_components=32)),
    ("probe", LogisticRegression(max_iter=1000)),
])
estimators = {
    "empirical": None,  # unbiased empirical covariances
    "shrunk 0.1": ShrunkCovariance(shrinkage=0.1),
    "shrunk 0.5": ShrunkCovariance(shrinkage=0.5),
    "Ledoit-Wolf": LedoitWolf(),
    "OAS": OAS(),
}
search = GridSearchCV(
    pipe,
    {"decompose__covariance_estimator": list(estimators.values())},
    scoring={"icr": ICRScorer(), "accuracy": "accuracy"},
    refit="icr",
    cv=KFold(5, shuffle=True, random_state=0),
)
search.fit(X, labels)

results = search.cv_results_
table = pd.DataFrame({
    "covariance estimator": list(estimators),
    "held-out ICR": -results["mean_test_icr"],
    "ICR std": results["std_test_icr"],
    "probe accuracy": results["mean_test_accuracy"],
    "accuracy std": results["std_test_accuracy"],
})
table.round(4)

# %%
print("chosen without labels:", search.best_params_["decompose__covariance_estimator"])

# %%
# The same table as a plot: mean over the folds, with the fold-to-fold
# standard deviation as error bars.
import matplotlib.pyplot as plt

fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True,
                                  layout="constrained")
positions = np.arange(len(table))
left.errorbar(table["held-out ICR"], positions, xerr=table["ICR std"], fmt="o")
left.set_xlabel("held-out ICR (lower is cleaner)")
left.set_yticks(positions, table["covariance estimator"])
left.invert_yaxis()
right.errorbar(table["probe accuracy"], positions, xerr=table["accuracy std"], fmt="s",
               color="tab:orange")
right.set_xlabel("probe accuracy (labels, for checking)")
for ax in (left, right):
    ax.grid(axis="x", alpha=0.3)
_ = fig.suptitle("Covariance estimators on 384-feature views of 300 digits, 5 folds")

# %%
# Shrinkage coefficients
# ----------------------
# The fitted decomposer reports the shrinkage each estimator chose, for
# both covariances. Ledoit-Wolf and OAS pick them from the data (here from
# streaming statistics that reproduce scikit-learn's estimators on the
# contrast rows exactly).
for estimator in [LedoitWolf(), OAS()]:
    fitted = InvariantResidualDecomposer(covariance_estimator=estimator).fit(X)
    print(f"{type(estimator).__name__:>10}: "
          f"shrinkage of Sigma_s {fitted.shrinkage_s_:.3f}, "
          f"of Sigma_xi {fitted.shrinkage_xi_:.3f}, in-sample ICR {fitted.icr_:.4f}")

# %%
# Reading the table
# -----------------
# Each candidate's score is the ICR of the test images along the Fisher
# directions fitted on the training images, with the test covariances
# estimated plainly (unbiased empirical) for every candidate: the estimator
# shapes the directions only, so the score asks how well each candidate's
# training directions carry over to new images. Read the ranking together
# with the fold-to-fold spread (``ICR std``): differences smaller than the
# spread do not rank anything. The probe's accuracy, on the same folds, is
# the labelled check; on these easy digits it varies little between the
# candidates.
