"""The streaming noise-level scan: equal to the in-memory selector, resumable, across processes."""

import os
import pickle
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.covariance import LedoitWolf, MinCovDet
from sklearn.linear_model import LogisticRegression
from torch.utils.data import DataLoader, TensorDataset

from skicr import FeatureExtractor, InvariantResidualDecomposer, NoiseLevelSelector
from skicr.metrics import (
    accumulate,
    decompose,
    heldout_icr,
    heldout_icr_from_statistics,
    lidar,
    lidar_from_statistics,
    rankme,
    rankme_from_statistics,
)
from skicr.model_selection import NoiseLevelDecisionWarning, StreamingNoiseLevelSelector
from skicr.models import SmallUNet
from skicr.streaming import fold_statistics_from_loader

SIGMAS = [0.05, 0.3, 1.5]
N_IMAGES = 45


def _net():
    torch.manual_seed(0)
    return SmallUNet(channels=(4, 8), mid_channels=8, emb_dim=8, n_frequencies=2)


def _data():
    rng = np.random.default_rng(0)
    images = rng.random((N_IMAGES, 1, 16, 16), dtype=np.float32)
    return images, np.arange(N_IMAGES) % 3


def _extractor(batch_size=8, **kwargs):
    return FeatureExtractor(_net(), layer="mid", n_views=3, batch_size=batch_size, **kwargs)


# the loader batches are multiples of the extractor's batch_size (8), so the network sees the
# same chunks as in memory: float32 convolutions depend on the chunk (~1e-7 otherwise)


def _compare(streamed, in_memory, rtol=1e-10):
    assert set(streamed) == set(in_memory)
    for key, expected in in_memory.items():
        if "time" in key:
            continue
        actual = streamed[key]
        if expected.dtype == object:
            assert list(actual) == list(expected), key
        else:
            np.testing.assert_allclose(actual, expected, rtol=rtol, atol=0, err_msg=key)


# ------------------------------------------------------------- statistics-based criteria
def test_criteria_from_statistics_equal_the_views():
    rng = np.random.default_rng(1)
    views = 5.0 + rng.normal(size=(60, 4, 6)) + rng.normal(size=(60, 1, 6))
    merged = accumulate(views[:25]).merge(accumulate(views[25:]))
    assert lidar_from_statistics(merged) == pytest.approx(lidar(views), rel=1e-12)
    assert rankme_from_statistics(merged) == pytest.approx(rankme(views), rel=1e-12)
    directions = decompose(accumulate(views[:40])).directions
    assert heldout_icr_from_statistics(directions, accumulate(views[40:])) == pytest.approx(
        heldout_icr(directions, views[40:]), rel=1e-12)
    fitted = InvariantResidualDecomposer().fit(views[:40])
    assert fitted.score_statistics(accumulate(views[40:])) == pytest.approx(fitted.score(views[40:]),
                                                                            rel=1e-12)


def test_rankme_from_statistics_with_fewer_rows_than_features():
    views = np.random.default_rng(2).normal(size=(3, 2, 10))  # 6 rows, 10 features
    assert rankme_from_statistics(accumulate(views)) == pytest.approx(rankme(views), rel=1e-6)


def test_score_statistics_checks_its_input():
    views = np.random.default_rng(0).normal(size=(30, 3, 4))
    fitted = InvariantResidualDecomposer().fit(views)
    with pytest.raises(TypeError, match="GroupedViewStatistics"):
        fitted.score_statistics(views)
    with pytest.raises(ValueError, match="3 views of 5 features"):
        fitted.score_statistics(accumulate(np.random.default_rng(0).normal(size=(5, 3, 5))))


# ------------------------------------------------------------- equal to the in-memory selector
@pytest.mark.parametrize("cv", [3, 1])
def test_streaming_scan_equals_in_memory_selector(cv):
    images, y = _data()
    kwargs = dict(cv=cv, random_state=0)
    if cv > 1:
        kwargs["probe"] = LogisticRegression(max_iter=200)
    with _no_fail():
        streamed = StreamingNoiseLevelSelector(_extractor(), SIGMAS, batch_size=16, **kwargs).fit(
            images, y if cv > 1 else None)
        in_memory = NoiseLevelSelector(_extractor(), SIGMAS, refit=False, **kwargs).fit(
            images, y if cv > 1 else None)
    _compare(streamed.cv_results_, in_memory.cv_results_)
    assert streamed.best_index_ == in_memory.best_index_
    assert streamed.decision_ == in_memory.decision_
    assert streamed.n_splits_ == in_memory.n_splits_ and streamed.n_images_ == N_IMAGES


class _no_fail:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", NoiseLevelDecisionWarning)

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


def test_streaming_scan_shrinkage_and_dataloader_with_labels():
    images, y = _data()
    loader = DataLoader(TensorDataset(torch.from_numpy(images), torch.from_numpy(y)), batch_size=8)
    decomposer = InvariantResidualDecomposer(covariance_estimator=LedoitWolf())
    with _no_fail():
        # labels read from the batches (the TensorDataset has no targets)
        streamed = StreamingNoiseLevelSelector(
            _extractor(), SIGMAS, decomposer=decomposer, probe=LogisticRegression(max_iter=200),
            probe_features="view_mean", cv=3, random_state=3, refit=True,
        ).fit(loader)
        in_memory = NoiseLevelSelector(
            _extractor(), SIGMAS, decomposer=decomposer, probe=LogisticRegression(max_iter=200),
            probe_features="view_mean", cv=3, random_state=3,
        ).fit(images, y)
    _compare(streamed.cv_results_, in_memory.cv_results_)
    expected = in_memory.best_estimator_.named_steps["decompose"]
    fitted = streamed.best_estimator_.named_steps["decompose"]
    np.testing.assert_allclose(fitted.covariance_s_, expected.covariance_s_, rtol=1e-10)
    assert fitted.icr_ == pytest.approx(expected.icr_, rel=1e-10)


def test_streaming_scan_refuses_what_needs_the_views():
    images, _ = _data()
    with pytest.raises(ValueError, match="callable scoring"):
        StreamingNoiseLevelSelector(_extractor(), SIGMAS, scoring=lambda a, b: 0.0).fit(images)
    with pytest.raises(ValueError, match="MinCovDet"):
        StreamingNoiseLevelSelector(
            _extractor(), SIGMAS,
            decomposer=InvariantResidualDecomposer(covariance_estimator=MinCovDet())).fit(images)
    from sklearn.model_selection import ShuffleSplit

    with pytest.raises(ValueError, match="shuffles"):
        StreamingNoiseLevelSelector(_extractor(), SIGMAS).fit(
            DataLoader(torch.from_numpy(images), batch_size=8, shuffle=True))
    with pytest.raises(ValueError, match="KFold-like|cover every image"):
        StreamingNoiseLevelSelector(_extractor(), SIGMAS,
                                    cv=ShuffleSplit(3, test_size=0.2, random_state=0)).fit(images)


# ------------------------------------------------------------- resume
class _Interrupt(Exception):
    pass


class _StopAfter(torch.utils.data.Dataset):
    """Images that raise once item ``stop`` is read (an interruption mid-sigma)."""

    def __init__(self, images, stop):
        self.images, self.stop = images, stop

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        if self.stop is not None and index == self.stop:
            self.stop = None
            raise _Interrupt
        return torch.from_numpy(self.images[index])


def test_fold_statistics_resume_after_interruption_equal_uninterrupted(tmp_path):
    images, _ = _data()
    folds = np.arange(N_IMAGES) % 4
    full = fold_statistics_from_loader(_extractor(random_state=0), DataLoader(images, batch_size=5),
                                       folds, probe_features="first_view")
    dataset = _StopAfter(images, stop=31)
    loader = DataLoader(dataset, batch_size=5)
    path = tmp_path / "folds.pt"
    with pytest.raises(_Interrupt):
        fold_statistics_from_loader(_extractor(random_state=0), loader, folds,
                                    probe_features="first_view", checkpoint=path, checkpoint_every=2)
    partial = torch.load(path, weights_only=True)
    assert not partial["complete"] and partial["n_batches"] == 6  # saved on the interruption
    resumed = fold_statistics_from_loader(_extractor(random_state=0), loader, folds,
                                          probe_features="first_view", checkpoint=path)
    for a, b in zip(resumed.statistics, full.statistics):
        assert a.n_images == b.n_images
        np.testing.assert_allclose(a.residual_scatter, b.residual_scatter, rtol=1e-12)
        np.testing.assert_allclose(a.covariance_means(), b.covariance_means(), rtol=1e-12)
    np.testing.assert_array_equal(resumed.features, full.features)
    # finished: reused without extracting (and other folds are refused)
    again = fold_statistics_from_loader(_extractor(random_state=0), loader, folds,
                                        probe_features="first_view", checkpoint=path)
    assert again.extract_time == 0.0
    with pytest.raises(ValueError, match="other cross-validation folds"):
        fold_statistics_from_loader(_extractor(random_state=0), loader, np.arange(N_IMAGES) % 3,
                                    checkpoint=path)


def test_fold_checkpoint_holding_every_batch_is_marked_complete(tmp_path):
    images, _ = _data()
    folds = np.arange(N_IMAGES) % 3
    loader = DataLoader(images, batch_size=9)
    full = fold_statistics_from_loader(_extractor(random_state=0), loader, folds)

    def finished_then_interrupted():
        yield from loader
        raise _Interrupt

    path = tmp_path / "folds.pt"
    with pytest.raises(_Interrupt):
        fold_statistics_from_loader(_extractor(random_state=0), finished_then_interrupted(), folds,
                                    checkpoint=path)
    saved = torch.load(path, weights_only=True)
    assert saved["n_batches"] == len(loader) and not saved["complete"]
    resumed = fold_statistics_from_loader(_extractor(random_state=0), loader, folds, checkpoint=path)
    assert torch.load(path, weights_only=True)["complete"]
    again = fold_statistics_from_loader(_extractor(random_state=0), loader, folds, checkpoint=path)
    assert again.extract_time == 0.0  # reused as it is
    for result in (resumed, again):
        for a, b in zip(result.statistics, full.statistics):
            np.testing.assert_allclose(a.residual_scatter, b.residual_scatter, rtol=1e-12)
    # a run that reads no batch writes no checkpoint
    empty = tmp_path / "empty.pt"
    with pytest.raises(ValueError, match="no images"):
        fold_statistics_from_loader(_extractor(random_state=0).fit(images), [], folds, checkpoint=empty)
    assert not empty.exists()


def test_streaming_scan_resumes_to_the_same_result(tmp_path):
    images, _ = _data()
    kwargs = dict(cv=3, random_state=0, batch_size=8, checkpoint=tmp_path / "scan",
                  checkpoint_every=1)
    with _no_fail():
        reference = StreamingNoiseLevelSelector(_extractor(), SIGMAS, cv=3, random_state=0,
                                                batch_size=8).fit(images)
        with pytest.raises(_Interrupt):  # stopped in the first sigma's fourth batch
            StreamingNoiseLevelSelector(_extractor(), SIGMAS, **kwargs).fit(_StopAfter(images, 30))
        assert sorted(p.name for p in (tmp_path / "scan").iterdir()) == ["sigma-000.pt"]
        resumed = StreamingNoiseLevelSelector(_extractor(), SIGMAS, **kwargs).fit(images)
        # every sigma finished: a rerun reads nothing but one batch, extracts nothing
        again = StreamingNoiseLevelSelector(_extractor(), SIGMAS, **kwargs).fit(images)
    _compare(resumed.cv_results_, reference.cv_results_)
    _compare(again.cv_results_, reference.cv_results_)
    assert np.all(again.cv_results_["extract_time"] == 0.0)


def test_damaged_fold_checkpoint_is_a_clear_error(tmp_path):
    images, _ = _data()
    path = tmp_path / "folds.pt"
    folds = np.arange(N_IMAGES) % 2
    fold_statistics_from_loader(_extractor(random_state=0), DataLoader(images, batch_size=9), folds,
                                checkpoint=path)
    state = torch.load(path, weights_only=True)
    state["n_batches"] = 1  # edited: the seal no longer matches
    torch.save(state, path)
    with pytest.raises(ValueError, match="damaged|edited|hash"):
        fold_statistics_from_loader(_extractor(random_state=0), DataLoader(images, batch_size=9),
                                    folds, checkpoint=path)


# ------------------------------------------------------------- two processes
def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _small_data():
    images, y = _data()
    return images[:21], y[:21]


def _scan_worker(rank, world_size, port, out_dir):
    import warnings

    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        images, y = _small_data()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoiseLevelDecisionWarning)
            # one image per forward pass: the shards' chunks are not the single process's
            selector = StreamingNoiseLevelSelector(
                _extractor(batch_size=1), SIGMAS[:2], probe=LogisticRegression(max_iter=200), cv=3, random_state=0,
                batch_size=6, checkpoint=os.path.join(out_dir, "ckpt"),
            ).fit(images, y)
        with open(os.path.join(out_dir, f"results_{rank}.pkl"), "wb") as handle:
            pickle.dump(selector.cv_results_, handle)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two processes, each importing torch (22 s at a load of 3, 18 s of CPU)
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_process_scan_equals_one_process(tmp_path):
    mp.spawn(_scan_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    images, y = _small_data()
    torch.set_num_threads(1)
    with _no_fail():
        single = StreamingNoiseLevelSelector(_extractor(batch_size=1), SIGMAS[:2],
                                             probe=LogisticRegression(max_iter=200),
                                             cv=3, random_state=0, batch_size=6).fit(images, y)
    for rank in range(2):
        with open(tmp_path / f"results_{rank}.pkl", "rb") as handle:
            _compare(pickle.load(handle), single.cv_results_)
    # each rank checkpointed its own shard (21 images: 11 + 10, the padding duplicate dropped)
    shards = [torch.load(tmp_path / "ckpt" / f"sigma-000.rank{r}.pt", weights_only=True) for r in range(2)]
    assert [sum(s["n_images"] for s in shard["statistics"]) for shard in shards] == [11, 10]


def test_distributed_shards_summed_are_the_one_process_fold_statistics():
    # in one process, what the two-process test checks across processes: each rank's
    # DistributedSampler shard (numbered by dataset index, the padding duplicate dropped),
    # summed fold by fold, is the single process's statistics
    from torch.utils.data.distributed import DistributedSampler

    images, _ = _small_data()
    dataset = torch.from_numpy(images)
    folds = np.arange(len(images)) % 3
    single = fold_statistics_from_loader(_extractor(batch_size=1, random_state=0),
                                         DataLoader(dataset, batch_size=6), folds)
    shards = [
        fold_statistics_from_loader(
            _extractor(batch_size=1, random_state=0),
            DataLoader(dataset, batch_size=6,
                       sampler=DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=False)),
            folds, distributed=False,
        )
        for rank in range(2)
    ]
    assert [sum(s.n_images for s in shard.statistics) for shard in shards] == [11, 10]
    for k, expected in enumerate(single.statistics):
        summed = shards[0].statistics[k].copy().merge(shards[1].statistics[k])
        assert summed.n_images == expected.n_images
        np.testing.assert_allclose(summed.residual_scatter, expected.residual_scatter, rtol=1e-12)
        np.testing.assert_allclose(summed.covariance_means(), expected.covariance_means(), rtol=1e-12)


def test_images_counted_twice_are_a_clear_error():
    images, _ = _data()
    twice = torch.utils.data.ConcatDataset([torch.from_numpy(images)] * 2)  # numbers 45..89
    with pytest.raises(ValueError, match="image number"):
        fold_statistics_from_loader(_extractor(random_state=0), DataLoader(twice, batch_size=9),
                                    np.arange(N_IMAGES) % 3)


def test_open_image_dataset_refuses_other_objects():
    from skicr.datasets import open_image_dataset

    with pytest.raises(TypeError, match="a path, an array or a dataset"):
        open_image_dataset(3.5)


def _resume_worker(rank, world_size, port, out_dir):
    import warnings

    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        images, _ = _small_data()
        kwargs = dict(cv=3, random_state=0, batch_size=3, checkpoint=os.path.join(out_dir, "ckpt"),
                      checkpoint_every=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoiseLevelDecisionWarning)
            try:  # each rank stops in its own shard (rank 0 reads even indices, rank 1 odd ones)
                StreamingNoiseLevelSelector(_extractor(batch_size=1), SIGMAS[:2], **kwargs).fit(
                    _StopAfter(images, stop=12 + rank))
            except _Interrupt:
                pass
            selector = StreamingNoiseLevelSelector(_extractor(batch_size=1), SIGMAS[:2],
                                                   **kwargs).fit(images)
        with open(os.path.join(out_dir, f"resumed_{rank}.pkl"), "wb") as handle:
            pickle.dump(selector.cv_results_, handle)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two processes, each importing torch
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_process_scan_resumes_each_rank_to_the_same_result(tmp_path):
    mp.spawn(_resume_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    images, _ = _small_data()
    torch.set_num_threads(1)
    with _no_fail():
        single = StreamingNoiseLevelSelector(_extractor(batch_size=1), SIGMAS[:2], cv=3,
                                             random_state=0, batch_size=3).fit(images)
    for rank in range(2):
        with open(tmp_path / f"resumed_{rank}.pkl", "rb") as handle:
            _compare(pickle.load(handle), single.cv_results_)
