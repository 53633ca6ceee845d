"""make_shapes_images: the project's own labelled RGB set (seeded, nothing downloaded)."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skicr.datasets import SHAPE_CLASSES, make_shapes_images


def test_shapes_dtype_range_and_labels():
    images, y = make_shapes_images(n_images=200, image_size=16)
    assert images.shape == (200, 3, 16, 16) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert y.shape == (200,) and y.dtype == np.int64
    assert len(SHAPE_CLASSES) == 10
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 20))  # exactly balanced
    assert isinstance(make_shapes_images(n_images=20, image_size=8, return_y=False), np.ndarray)


def test_shapes_balance_within_one_when_not_a_multiple():
    _, y = make_shapes_images(n_images=105, image_size=8)
    counts = np.bincount(y, minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 105


def test_shapes_same_seed_same_images_other_seed_other_images():
    a, ya = make_shapes_images(n_images=50, image_size=12, random_state=3)
    b, yb = make_shapes_images(n_images=50, image_size=12, random_state=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ya, yb)
    c, _ = make_shapes_images(n_images=50, image_size=12, random_state=4)
    assert np.abs(a - c).mean() > 0.05
    gen = make_shapes_images(n_images=50, image_size=12, random_state=np.random.default_rng(3))
    np.testing.assert_array_equal(gen[0], a)


def test_shapes_without_texture_and_clutter_the_corners_are_the_flat_background():
    # the object never reaches a corner (centre within 0.3, radius at most 0.6 of half the image)
    images, _ = make_shapes_images(n_images=40, image_size=16, clutter=0, texture=0.0)
    corners = images[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    np.testing.assert_allclose(corners, corners[:, :, :1].repeat(4, axis=2), atol=1e-6)
    # and the object is brighter than that background in every channel
    assert np.all(images.max(axis=(2, 3)) > corners[:, :, 0] + 0.04)


def test_shapes_classes_differ_by_shape_not_by_colour():
    images, y = make_shapes_images(n_images=400, image_size=16)
    mean_colour = images.mean(axis=(2, 3))
    per_class = np.stack([mean_colour[y == k].mean(axis=0) for k in range(10)])
    # no class has its own colour: class means of the average colour are close together
    assert np.ptp(per_class, axis=0).max() < 0.1


def test_raw_pixels_with_a_linear_probe_are_far_below_perfect():
    images, y = make_shapes_images(n_images=400, image_size=16)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300))
    accuracy = cross_val_score(probe, images.reshape(400, -1), y,
                               cv=StratifiedKFold(4, shuffle=True, random_state=0)).mean()
    assert accuracy < 0.5


@pytest.mark.parametrize("kwargs, match", [
    ({"n_images": 5}, "n_images"), ({"n_images": 20.0}, "n_images"),
    ({"image_size": 4}, "image_size"), ({"clutter": -1}, "clutter"),
    ({"texture": -0.5}, "texture"), ({"texture": "x"}, "texture"),
])
def test_shapes_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_shapes_images(**kwargs)
