"""Datasets as users store them: folder trees, flat folders, arrays, Hugging Face; DataLoaders."""

import numpy as np
import pytest
import torch
from PIL import Image

from skicr.datasets import (
    ArrayImageDataset,
    ImageFolderDataset,
    image_loader,
    load_images,
    open_image_dataset,
)


def _write_tree(root, n_per_class=3, size=8, classes=("cat", "dog", "eel")):
    rng = np.random.default_rng(0)
    pixels = []
    for name in classes:
        folder = root / name / "nested"  # images found recursively, as ImageFolder does
        folder.mkdir(parents=True)
        for i in range(n_per_class):
            array = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(array).save(folder / f"{i}.png")
            pixels.append(array)
    return np.stack(pixels)


def test_class_tree_gives_labels_from_folder_names(tmp_path):
    pixels = _write_tree(tmp_path)
    data = open_image_dataset(tmp_path)
    assert isinstance(data, ImageFolderDataset)
    assert data.classes == ["cat", "dog", "eel"]
    assert data.targets.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    image, label = data[4]
    assert label == 1 and image.dtype == torch.float32 and tuple(image.shape) == (3, 8, 8)
    np.testing.assert_allclose(image.numpy(), pixels[4].transpose(2, 0, 1) / 255.0, atol=1e-7)


def test_flat_folder_matches_load_images(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, size=(10, 12), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    data = open_image_dataset(tmp_path)
    assert data.targets is None and len(data) == 5
    stacked = torch.stack([data[i] for i in range(5)]).numpy()
    np.testing.assert_array_equal(stacked, load_images(tmp_path))
    resized = ImageFolderDataset(tmp_path, size=6)
    assert tuple(resized[0].shape) == (1, 6, 6)


def test_folder_errors_name_the_problem(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "b.png")
    data = ImageFolderDataset(tmp_path)
    data[0]
    with pytest.raises(ValueError, match="b.png.*size="):
        data[1]
    (tmp_path / "class").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "class" / "c.png")
    with pytest.raises(ValueError, match="not both"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageFolderDataset(tmp_path / "empty")


def test_npy_is_memory_mapped_and_npz_carries_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(7, 6, 6, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    data = open_image_dataset(tmp_path / "x.npy", labels=np.arange(7))
    assert isinstance(data.array, np.memmap)
    image, label = data[6]
    assert label == 6
    np.testing.assert_allclose(image.numpy(), images[6].transpose(2, 0, 1) / 255.0, atol=1e-7)
    np.savez(tmp_path / "x.npz", images=images, labels=np.arange(7) % 2)
    data = ArrayImageDataset(tmp_path / "x.npz")
    assert data.targets.tolist() == [0, 1, 0, 1, 0, 1, 0]
    np.savez(tmp_path / "bad.npz", pixels=images)
    with pytest.raises(ValueError, match="no images array"):
        ArrayImageDataset(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="3 labels for 7 images"):
        ArrayImageDataset(images, labels=[0, 1, 2])


def test_hugging_face_save_to_disk_and_parquet(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, size=(8, 8), dtype=np.uint8) for _ in range(6)]
    table = datasets.Dataset.from_dict(
        {"img": [Image.fromarray(p) for p in pixels], "label": [0, 1, 2, 0, 1, 2]},
        features=datasets.Features({"img": datasets.Image(),
                                    "label": datasets.ClassLabel(names=["a", "b", "c"])}),
    )
    table.save_to_disk(str(tmp_path / "saved"))
    table.to_parquet(str(tmp_path / "table.parquet"))
    datasets.DatasetDict({"train": table, "test": table}).save_to_disk(str(tmp_path / "splits"))
    for source in (tmp_path / "saved", tmp_path / "table.parquet"):
        data = open_image_dataset(source)
        assert data.image_column == "img" and data.targets.tolist() == [0, 1, 2, 0, 1, 2]
        image, label = data[3]
        assert label == 0 and tuple(image.shape) == (1, 8, 8)
        np.testing.assert_allclose(image.numpy()[0], pixels[3] / 255.0, atol=1e-7)
    assert data.classes == ["a", "b", "c"]
    with pytest.raises(ValueError, match="split"):
        open_image_dataset(tmp_path / "splits")
    assert len(open_image_dataset(tmp_path / "splits", split="test")) == 6


def test_image_loader_decodes_in_workers(tmp_path):
    _write_tree(tmp_path, n_per_class=2)
    loader = image_loader(open_image_dataset(tmp_path), batch_size=4, num_workers=2)
    batches = list(loader)
    assert [tuple(images.shape) for images, _ in batches] == [(4, 3, 8, 8), (2, 3, 8, 8)]
    assert torch.cat([labels for _, labels in batches]).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="batch_size"):
        image_loader(open_image_dataset(tmp_path), batch_size=0)


def test_streaming_scan_of_a_folder_tree_equals_the_images_in_memory(tmp_path):
    import warnings

    from sklearn.linear_model import LogisticRegression

    from skicr import FeatureExtractor, NoiseLevelSelector, StreamingNoiseLevelSelector
    from skicr.models import SmallUNet

    pixels = _write_tree(tmp_path, n_per_class=8, size=16)
    images = pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    y = np.repeat(np.arange(3), 8)
    torch.manual_seed(0)
    net = SmallUNet(in_channels=3, channels=(4, 8), mid_channels=8, emb_dim=8, n_frequencies=2)
    extractor = FeatureExtractor(net, layer="mid", n_views=2, batch_size=8)
    kwargs = dict(probe=LogisticRegression(max_iter=200), cv=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        streamed = StreamingNoiseLevelSelector(extractor, [0.1, 1.0], batch_size=8, num_workers=0,
                                               **kwargs).fit(str(tmp_path))
        in_memory = NoiseLevelSelector(extractor, [0.1, 1.0], refit=False, **kwargs).fit(images, y)
    for key in ("mean_icr", "split0_icr", "mean_lidar", "mean_probe_accuracy"):
        np.testing.assert_allclose(streamed.cv_results_[key], in_memory.cv_results_[key], rtol=1e-10)
