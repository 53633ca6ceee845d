"""Custom augmentation and pooling callables that produce NaN get a clear error (issue 14)."""

import numpy as np
import pytest
import torch

from skicr import FeatureExtractor
from skicr.extraction._testing import tiny_unet2d


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((4, 3, 16, 16), dtype=np.float32)


def nan_augment(views, generator):
    return torch.full_like(views, float("nan"))


def nan_pooling(features):
    return torch.full((features.shape[0], 3), float("nan"))


def test_nan_augmentation_callable_is_refused(images):
    extractor = FeatureExtractor(tiny_unet2d(), n_views=2, augment=nan_augment, random_state=0)
    with pytest.raises(ValueError, match="augment callable nan_augment returned NaN"):
        extractor.fit_transform(images)


def test_nan_pooling_callable_is_refused(images):
    extractor = FeatureExtractor(tiny_unet2d(), n_views=2, pooling=nan_pooling, random_state=0)
    with pytest.raises(ValueError, match="pooling callable nan_pooling returned NaN"):
        extractor.fit_transform(images)
