"""Streaming extraction from loaders, DistributedSampler numbering, resume, fit_statistics."""

import tracemalloc

import numpy as np
import pytest
import torch
from sklearn.covariance import OAS, LedoitWolf, MinCovDet
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from skicr import InvariantResidualDecomposer
from skicr.extraction import (
    FeatureExtractor,
    extract_views,
    fit_from_loader,
    iter_loader_views,
    statistics_from_loader,
)
from skicr._utils.images import check_images
from skicr.extraction._testing import TinyEDMNet
from skicr.metrics import GroupedViewStatistics, accumulate

from _synthetic import assert_same_fit, assert_same_statistics


N_IMAGES = 41


@pytest.fixture(scope="module")
def net():
    return TinyEDMNet(seed=0)


@pytest.fixture(scope="module")
def images():
    return torch.rand(N_IMAGES, 1, 16, 16, generator=torch.Generator().manual_seed(0))


def make_extractor(net, **kwargs):
    params = dict(layer="mid", sigma=0.3, n_views=3, random_state=0, batch_size=5)
    params.update(kwargs)
    return FeatureExtractor(net, **params)


@pytest.fixture(scope="module")
def reference(net, images):
    """Views of all images in one transform_views call."""
    return make_extractor(net).fit(images).transform_views(images)


# ------------------------------------------------------------------ views
def test_loader_views_equal_transform_views_exactly(net, images, reference):
    labels = torch.arange(N_IMAGES)
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    items = list(iter_loader_views(make_extractor(net), loader))  # unfitted: fitted on batch 0
    views = np.concatenate([item.views for item in items])
    assert views.dtype == np.float32
    np.testing.assert_array_equal(views, reference)
    np.testing.assert_array_equal(np.concatenate([item.indices for item in items]), np.arange(N_IMAGES))
    assert all(item.keep.all() for item in items)
    assert items[0].batch[1].tolist() == list(range(8))  # the loader batch comes along


@pytest.mark.parametrize("fmt", ["array", "uint8_nhwc", "dict_image", "dict_pixel_values", "list"])
def test_batch_formats(net, images, reference, fmt):
    numpy_images = images.numpy()

    def batches():
        for start in range(0, N_IMAGES, 16):
            chunk = numpy_images[start:start + 16]
            if fmt == "array":
                yield chunk
            elif fmt == "uint8_nhwc":
                yield np.round(chunk * 255).astype(np.uint8).transpose(0, 2, 3, 1)
            elif fmt == "dict_image":
                yield {"image": torch.from_numpy(chunk), "label": None}
            elif fmt == "dict_pixel_values":
                yield {"pixel_values": chunk}
            else:
                yield [torch.from_numpy(chunk), "ignored"]

    extractor = make_extractor(net).fit(images)
    views = np.concatenate([item.views for item in iter_loader_views(extractor, batches())])
    if fmt == "uint8_nhwc":
        quantised = np.round(numpy_images * 255).astype(np.uint8)
        np.testing.assert_array_equal(views, extractor.transform_views(quantised))
    else:
        np.testing.assert_array_equal(views, reference)


def test_position_numbering_continues_across_uneven_batches(net, images, reference):
    sizes = [1, 7, 13, 20]
    starts = np.cumsum([0] + sizes)
    loader = [images[a:b] for a, b in zip(starts[:-1], starts[1:])]
    views = np.concatenate([item.views for item in iter_loader_views(make_extractor(net), loader)])
    np.testing.assert_array_equal(views, reference)


@pytest.mark.parametrize("shuffle, drop_last", [(False, False), (True, False), (True, True)])
def test_distributed_sampler_shards_cover_each_image_once(net, images, reference, shuffle, drop_last):
    """Ranks simulated in one process: the sampler is given its rank explicitly."""
    dataset = TensorDataset(images, torch.arange(N_IMAGES))
    extractor = make_extractor(net).fit(images)
    seen, shards = [], []
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=shuffle,
                                     seed=3, drop_last=drop_last)
        loader = DataLoader(dataset, batch_size=6, sampler=sampler)
        stats = GroupedViewStatistics()
        for item in iter_loader_views(extractor, loader):
            # views of an image are those of a single-process run, by dataset index
            np.testing.assert_array_equal(item.views, reference[item.indices])
            np.testing.assert_array_equal(item.batch[1][torch.from_numpy(item.keep)].numpy(), item.indices)
            seen.extend(item.indices.tolist())
            stats.update(item.views)
        shards.append(stats)
    expected = N_IMAGES - 1 if drop_last else N_IMAGES  # drop_last: the sampler drops the tail
    assert len(seen) == len(set(seen)) == expected
    merged = shards[0].merge(shards[1])
    kept = np.sort(seen)
    assert_same_fit(InvariantResidualDecomposer().fit_statistics(merged),
                    InvariantResidualDecomposer().fit(reference[kept]))


def test_position_numbering_can_be_forced(net, images, reference):
    dataset = TensorDataset(images)
    sampler = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=False)
    loader = DataLoader(dataset, batch_size=6, sampler=sampler)
    items = list(iter_loader_views(make_extractor(net), loader, image_indices="position"))
    assert all(item.keep.all() for item in items)  # nothing dropped
    np.testing.assert_array_equal(np.concatenate([i.indices for i in items]), np.arange(21))


def test_streaming_holds_no_growing_state(net):
    """Peak traced memory of the stream does not grow with the number of batches."""
    extractor = make_extractor(net, batch_size=16).fit(np.zeros((1, 1, 16, 16), np.float32))

    def peak(n_batches):
        def batches():  # fresh batches, never kept by the producer
            generator = torch.Generator().manual_seed(1)
            for _ in range(n_batches):
                yield torch.rand(32, 1, 16, 16, generator=generator)

        stats = GroupedViewStatistics()
        tracemalloc.start()
        for item in iter_loader_views(extractor, batches()):
            stats.update(item.views)
        result = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert stats.n_images == 32 * n_batches
        return result

    small, large = peak(2), peak(12)
    assert large < 1.2 * small + 256 * 1024, (small, large)


# ----------------------------------------------------------------- errors
@pytest.mark.parametrize("batch, error, match", [
    ("not images", TypeError, "is a str"),
    (7, TypeError, "is a int"),
    ({"label": np.zeros(3)}, ValueError, "dict with keys \\['label'\\]"),
    ((), ValueError, "empty tuple"),
    (np.full((2, 1, 16, 16), np.nan, np.float32), ValueError, "Batch 0 .*NaN"),
    (np.zeros((2, 3, 16, 16), np.float32), ValueError, "Batch 0 .*1-channel"),
    (np.zeros((0, 1, 16, 16), np.float32), ValueError, "Batch 0 .*empty"),
    (np.full((2, 1, 16, 16), 2.0, np.float32), ValueError, "Batch 0 .*\\[0, 1\\]"),
])
def test_bad_batches_are_clear_errors(net, images, batch, error, match):
    extractor = make_extractor(net).fit(images)
    with pytest.raises(error, match=match):
        list(iter_loader_views(extractor, [batch]))


def test_bad_batch_later_in_the_stream_names_its_number(net, images):
    loader = [images[:4], images[4:8].numpy() * np.nan]
    with pytest.raises(ValueError, match="Batch 1 of the loader"):
        fit_from_loader(make_extractor(net), loader)


def test_empty_loader_is_a_clear_error(net, images):
    with pytest.raises(ValueError, match="yielded no images"):
        fit_from_loader(make_extractor(net).fit(images), [])
    with pytest.raises(ValueError, match="at least 2 images"):
        fit_from_loader(make_extractor(net), [images[:1]])


def test_bad_options_are_clear_errors(net, images):
    extractor = make_extractor(net)
    with pytest.raises(ValueError, match="image_indices"):
        list(iter_loader_views(extractor, [images], image_indices="dataset"))
    with pytest.raises(ValueError, match="checkpoint_every"):
        fit_from_loader(extractor, [images], checkpoint_every=0)
    with pytest.raises(ValueError, match="distributed must be"):
        fit_from_loader(extractor, [images], distributed="yes")
    with pytest.raises(RuntimeError, match="not initialised"):
        fit_from_loader(extractor, [images], distributed=True)
    with pytest.raises(TypeError, match="InvariantResidualDecomposer"):
        fit_from_loader(extractor, [images], decomposer=LedoitWolf())

    def never():
        raise AssertionError("extraction must not start")
        yield

    with pytest.raises(ValueError, match="streaming covariance estimator"):
        fit_from_loader(extractor, never(), InvariantResidualDecomposer(covariance_estimator=MinCovDet()))
    with pytest.raises(ValueError, match="n_views=2"):
        fit_from_loader(extractor, never(), InvariantResidualDecomposer(n_views=2))


def test_distributed_sampler_needs_batches(net, images):
    dataset = TensorDataset(images)
    sampler = DistributedSampler(dataset, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="batch_size=None"):
        list(iter_loader_views(make_extractor(net), DataLoader(dataset, batch_size=None, sampler=sampler)))


# ------------------------------------------------------------ one call
def test_fit_from_loader_equals_fit(net, images, reference):
    loader = DataLoader(TensorDataset(images), batch_size=8)
    for estimator in (None, LedoitWolf(), OAS()):
        decomposer = InvariantResidualDecomposer(covariance_estimator=estimator, n_components=3)
        fitted = fit_from_loader(make_extractor(net), loader, decomposer)
        assert fitted is decomposer
        expected = InvariantResidualDecomposer(covariance_estimator=estimator, n_components=3).fit(reference)
        assert_same_fit(fitted, expected)
        assert fitted.n_images_seen_ == N_IMAGES and fitted.n_features_in_ == expected.n_features_in_
        np.testing.assert_allclose(fitted.transform(reference), expected.transform(reference),
                                   rtol=1e-9, atol=1e-9)
    stats = statistics_from_loader(make_extractor(net), loader)
    assert stats.n_images == N_IMAGES and stats.n_views == 3
    # loader == one pass == merged halves, on the statistics themselves
    one_pass = accumulate(reference.astype(np.float64))
    assert_same_statistics(stats, one_pass, rtol=1e-10)
    halves = accumulate(reference[:20].astype(np.float64)).merge(accumulate(reference[20:].astype(np.float64)))
    assert_same_statistics(halves, one_pass, rtol=1e-10)


# --------------------------------------------------------------- resume
class Interrupted(Exception):
    pass


def interrupted(loader, after):
    """The loader's batches, raising after ``after`` of them (a run stopped half-way)."""
    for number, batch in enumerate(loader):
        if number == after:
            raise Interrupted
        yield batch


def test_interrupted_run_resumes_to_the_uninterrupted_result(net, images, tmp_path):
    loader = [images[start:start + 4] for start in range(0, N_IMAGES, 4)]  # 11 batches
    full = fit_from_loader(make_extractor(net), loader)

    path = tmp_path / "run.pt"
    with pytest.raises(Interrupted):
        fit_from_loader(make_extractor(net), interrupted(loader, 5), checkpoint=path, checkpoint_every=2)
    saved = torch.load(path, weights_only=True)
    assert saved["n_batches"] == 5 and not saved["complete"]  # saved when interrupted

    resumed = fit_from_loader(make_extractor(net), loader, checkpoint=path, checkpoint_every=2)
    assert_same_fit(resumed, full)
    assert resumed.n_images_seen_ == N_IMAGES
    assert torch.load(path, weights_only=True)["complete"]
    # a finished checkpoint: nothing is extracted again
    again = fit_from_loader(make_extractor(net), loader, checkpoint=path)
    assert_same_fit(again, full)


def finished_then_interrupted(loader):
    """All of the loader's batches, then an interruption (a stop before the final save)."""
    yield from loader
    raise Interrupted


def test_checkpoint_holding_every_batch_is_marked_complete_and_then_left_alone(net, images, tmp_path):
    loader = [images[start:start + 4] for start in range(0, N_IMAGES, 4)]
    full = fit_from_loader(make_extractor(net), loader)
    path = tmp_path / "run.pt"
    with pytest.raises(Interrupted):
        fit_from_loader(make_extractor(net), finished_then_interrupted(loader), checkpoint=path)
    saved = torch.load(path, weights_only=True)
    assert saved["n_batches"] == len(loader) and not saved["complete"]
    # resumed with nothing left to read: the statistics are whole, and the file now says so
    assert_same_fit(fit_from_loader(make_extractor(net), loader, checkpoint=path), full)
    assert torch.load(path, weights_only=True)["complete"]
    # a complete checkpoint read to its end again: nothing changed, the file is not rewritten
    before = path.stat()
    assert_same_fit(fit_from_loader(make_extractor(net), loader, checkpoint=path), full)
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_run_without_batches_writes_no_checkpoint(net, images, tmp_path):
    # an empty "complete" checkpoint would answer every later run with no images
    path = tmp_path / "run.pt"
    with pytest.raises(ValueError, match="no images"):
        fit_from_loader(make_extractor(net).fit(images), [], checkpoint=path)
    assert not path.exists()


def test_hard_stop_resumes_from_the_last_periodic_checkpoint(net, images, tmp_path, monkeypatch):
    loader = [images[start:start + 4] for start in range(0, N_IMAGES, 4)]
    full = fit_from_loader(make_extractor(net), loader)
    update = GroupedViewStatistics.update
    calls = []

    def failing_update(self, views):  # fails inside the update: the statistics are not saved then
        calls.append(1)
        if len(calls) == 6:
            raise Interrupted
        return update(self, views)

    path = tmp_path / "run.pt"
    monkeypatch.setattr(GroupedViewStatistics, "update", failing_update)
    with pytest.raises(Interrupted):
        fit_from_loader(make_extractor(net), loader, checkpoint=path, checkpoint_every=2)
    monkeypatch.setattr(GroupedViewStatistics, "update", update)
    assert torch.load(path, weights_only=True)["n_batches"] == 4
    assert_same_fit(fit_from_loader(make_extractor(net), loader, checkpoint=path), full)


def test_checkpoint_mismatches_are_clear_errors(net, images, tmp_path):
    loader = [images[start:start + 4] for start in range(0, N_IMAGES, 4)]
    path = tmp_path / "run.pt"
    with pytest.raises(Interrupted):
        fit_from_loader(make_extractor(net), interrupted(loader, 3), checkpoint=path)
    with pytest.raises(ValueError, match="other settings; sigma: checkpoint 0.3, now 0.5"):
        fit_from_loader(make_extractor(net, sigma=0.5), loader, checkpoint=path)
    with pytest.raises(ValueError, match="other settings; layer"):
        fit_from_loader(make_extractor(net, layer="down"), loader, checkpoint=path)
    with pytest.raises(ValueError, match="base seed"):
        fit_from_loader(make_extractor(net, random_state=1), loader, checkpoint=path)
    shuffled = [images[start:start + 4] for start in range(1, N_IMAGES, 4)]
    with pytest.raises(ValueError, match="first 3 batches differ"):
        fit_from_loader(make_extractor(net), shuffled, checkpoint=path)
    with pytest.raises(ValueError, match="yielded only 2"):
        fit_from_loader(make_extractor(net), loader[:2], checkpoint=path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="(?i)could not read"):
        fit_from_loader(make_extractor(net), loader, checkpoint=tmp_path / "junk.pt")


def test_resume_reuses_the_seed_of_an_unseeded_run(net, images, tmp_path):
    loader = [images[start:start + 4] for start in range(0, N_IMAGES, 4)]
    path = tmp_path / "run.pt"
    with pytest.raises(Interrupted):
        fit_from_loader(make_extractor(net, random_state=None), interrupted(loader, 4), checkpoint=path)
    seed = torch.load(path, weights_only=True)["base_seed"]
    resumed = fit_from_loader(make_extractor(net, random_state=None), loader, checkpoint=path)
    # the same seed, given explicitly, in one uninterrupted run
    extractor = make_extractor(net).fit(images)
    spec = extractor.view_spec(base_seed=seed, progress=False)
    views = extract_views(extractor.backbone_, check_images(images), ("mid",), spec)["mid"]
    assert_same_fit(resumed, InvariantResidualDecomposer().fit(views))


# --------------------------------------------------------- fit_statistics
def test_fit_statistics_equals_fit(reference):
    views = reference.astype(np.float64)
    for estimator in (None, LedoitWolf()):
        expected = InvariantResidualDecomposer(covariance_estimator=estimator, n_components=2).fit(views)
        stats = accumulate(views[:20]).merge(accumulate(views[20:]))
        fitted = InvariantResidualDecomposer(covariance_estimator=estimator, n_components=2).fit_statistics(stats)
        assert_same_fit(fitted, expected)
        for name in ("n_views_", "n_features_in_", "n_features_view_", "n_images_seen_", "n_components_"):
            assert getattr(fitted, name) == getattr(expected, name), name
        np.testing.assert_allclose(fitted.score(views), expected.score(views), rtol=1e-12)
    # the statistics are copied: partial_fit after fit_statistics adds to the copy
    n_before = stats.n_images
    fitted.partial_fit(views[:5])
    assert stats.n_images == n_before and fitted.n_images_seen_ == n_before + 5


def test_fit_statistics_resets_feature_names(reference):
    pd = pytest.importorskip("pandas")
    flat = reference.reshape(N_IMAGES, -1)
    frame = pd.DataFrame(flat, columns=[f"view{v}_f{j}" for v in range(3) for j in range(16)])
    decomposer = InvariantResidualDecomposer().fit(frame)
    assert hasattr(decomposer, "feature_names_in_")
    decomposer.fit_statistics(accumulate(reference))
    assert not hasattr(decomposer, "feature_names_in_")
    decomposer.transform(flat)


def test_fit_statistics_errors(reference):
    stats = accumulate(reference)
    with pytest.raises(TypeError, match="GroupedViewStatistics"):
        InvariantResidualDecomposer().fit_statistics(reference)
    with pytest.raises(ValueError, match="streaming covariance estimator"):
        InvariantResidualDecomposer(covariance_estimator=MinCovDet()).fit_statistics(stats)
    with pytest.raises(ValueError, match="n_views=4"):
        InvariantResidualDecomposer(n_views=4).fit_statistics(stats)
    with pytest.raises(ValueError, match="at least 2 images"):
        InvariantResidualDecomposer().fit_statistics(accumulate(reference[:1]))
    with pytest.raises(ValueError, match="at least 2 images"):
        InvariantResidualDecomposer().fit_statistics(GroupedViewStatistics())
    with pytest.raises(ValueError, match="at least 2 are needed"):
        InvariantResidualDecomposer().fit_statistics(accumulate(reference[:, :1]))
    bad = stats.copy()
    bad.residual_scatter[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        InvariantResidualDecomposer().fit_statistics(bad)
