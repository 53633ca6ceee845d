import numpy as np
import pytest
from sklearn.datasets import load_digits

from skicr.datasets import load_digits_images, load_images, resize_images

PIL = pytest.importorskip("PIL.Image")


def test_digits_shape_range_labels():
    images, y = load_digits_images()
    assert images.shape == (1797, 1, 16, 16)
    assert images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert y.shape == (1797,) and y.dtype == np.int64
    assert np.array_equal(np.unique(y), np.arange(10))
    np.testing.assert_array_equal(y, load_digits().target)


def test_digits_size_8_keeps_original_pixels_and_return_y_false():
    images = load_digits_images(8, return_y=False)
    assert isinstance(images, np.ndarray)
    np.testing.assert_allclose(images[:, 0], load_digits().images / 16.0, atol=1e-7)


def test_digits_upsampled_keeps_the_digit():
    small = load_digits_images(8, return_y=False)
    big = load_digits_images(24, return_y=False)
    assert big.shape == (1797, 1, 24, 24)
    # shrinking back gives nearly the original images
    back = resize_images(big, 8)
    assert np.abs(back - small).mean() < 0.05


@pytest.mark.parametrize("size", [0, 1, 2.5, "16", True])
def test_digits_bad_size(size):
    with pytest.raises(ValueError, match="size"):
        load_digits_images(size)


def test_resize_images_rejects_3d():
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        resize_images(np.zeros((2, 8, 8)), 4)


def _write_pngs(folder, arrays, mode="L"):
    folder.mkdir(exist_ok=True)
    for i, a in enumerate(arrays):
        PIL.fromarray(a, mode=mode).save(folder / f"img{i:02d}.png")


def test_load_images_png_folder_grayscale(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (12, 10), dtype=np.uint8) for _ in range(3)]
    _write_pngs(tmp_path / "imgs", arrays)
    (tmp_path / "imgs" / "notes.txt").write_text("ignored")
    images, names = load_images(tmp_path / "imgs", return_names=True)
    assert names == ["img00.png", "img01.png", "img02.png"]
    assert images.shape == (3, 1, 12, 10) and images.dtype == np.float32
    np.testing.assert_allclose(images[:, 0], np.stack(arrays) / 255.0, atol=1e-7)


def test_load_images_rgb_folder_and_jpeg(tmp_path):
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    folder = tmp_path / "rgb"
    folder.mkdir()
    PIL.fromarray(rgb, mode="RGB").save(folder / "a.png")
    PIL.fromarray(rgb, mode="RGB").save(folder / "b.JPG")
    images = load_images(folder)
    assert images.shape == (2, 3, 8, 8)
    assert images[:, 0].mean() > 0.9 and images[:, 1:].max() < 0.1
    gray = load_images(folder, mode="L")
    assert gray.shape == (2, 1, 8, 8)


def test_load_images_mixed_sizes(tmp_path):
    folder = tmp_path / "mixed"
    _write_pngs(folder, [np.zeros((8, 8), np.uint8), np.zeros((10, 8), np.uint8)])
    with pytest.raises(ValueError, match="different sizes"):
        load_images(folder)
    images = load_images(folder, size=6)
    assert images.shape == (2, 1, 6, 6)


def test_load_images_empty_and_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        load_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_images(tmp_path / "nowhere")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ValueError, match="neither a folder"):
        load_images(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="mode"):
        load_images(tmp_path, mode="CMYK")


def test_load_images_npy_layouts(tmp_path):
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (4, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "u8.npy", u8)
    images = load_images(tmp_path / "u8.npy")
    assert images.shape == (4, 1, 16, 16)
    np.testing.assert_allclose(images[:, 0], u8 / 255.0, atol=1e-7)

    hwc = rng.random((2, 16, 16, 3)).astype(np.float32)
    np.save(tmp_path / "hwc.npy", hwc)
    images = load_images(tmp_path / "hwc.npy")
    assert images.shape == (2, 3, 16, 16)
    np.testing.assert_allclose(images, hwc.transpose(0, 3, 1, 2))

    chw = rng.random((2, 1, 16, 16))
    np.save(tmp_path / "chw.npy", chw)
    assert load_images(tmp_path / "chw.npy", size=8).shape == (2, 1, 8, 8)


@pytest.mark.parametrize(
    "array, match",
    [
        (np.full((2, 8, 8), 2.0), r"\[0, 1\]"),
        (np.full((2, 8, 8), np.nan), "NaN"),
        (np.zeros((2, 8)), "shape"),
        (np.zeros((0, 8, 8)), "no images"),
        (np.zeros((2, 8, 8), dtype=np.int32), "dtype"),
    ],
)
def test_load_images_bad_npy(tmp_path, array, match):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(ValueError, match=match):
        load_images(tmp_path / "bad.npy")
