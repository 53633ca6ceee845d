"""FeatureExtractor inside scikit-learn pipelines and searches, end to end."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline

from skicr import FeatureExtractor, InvariantResidualDecomposer
from skicr.extraction._testing import TinyEDMNet




@pytest.fixture(scope="module")
def digits():
    """60 digits (classes 0, 1, 7), 16x16 (nearest upsampling), values in [0, 1]."""
    data = load_digits()
    keep = np.flatnonzero(np.isin(data.target, [0, 1, 7]))[:60]
    images = np.kron(data.images[keep] / 16.0, np.ones((2, 2)))[:, None].astype(np.float32)
    return images, data.target[keep]


def _pipeline(net, **extract_params):
    return Pipeline([
        ("extract", FeatureExtractor(net, n_views=4, random_state=0, **extract_params)),
        ("decompose", InvariantResidualDecomposer(n_components=8)),
        ("probe", LogisticRegression(max_iter=1000)),
    ])


def test_pipeline_cross_val_score_end_to_end(digits):
    images, y = digits
    net = TinyEDMNet(width=16)
    scores = cross_val_score(
        _pipeline(net, sigma=0.2), images, y, cv=StratifiedKFold(3, shuffle=True, random_state=0)
    )
    assert scores.shape == (3,) and np.isfinite(scores).all()
    assert scores.mean() > 0.6  # three classes: chance is 1/3


def test_n_views_is_set_once_on_the_extractor(digits):
    images, y = digits
    pipe = _pipeline(TinyEDMNet(), sigma=0.2).set_params(extract__n_views=3).fit(images, y)
    assert pipe.named_steps["decompose"].n_views_ == 3
    assert pipe.predict(images[:5]).shape == (5,)


def test_grid_search_over_sigma_shares_the_network(digits):
    images, y = digits
    net = TinyEDMNet()
    search = GridSearchCV(_pipeline(net), {"extract__sigma": [0.1, 1.0]}, cv=2).fit(images, y)
    assert search.best_params_["extract__sigma"] in (0.1, 1.0)
    assert search.best_estimator_.named_steps["extract"].backbone is net
